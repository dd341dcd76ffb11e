"""The evaluation's calibration of the single-hour evidence (funnelpulse_evaluation/calibration.py),
on evidence drawn with a known dispersion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from funnelpulse_evaluation import calibration

START = pd.Timestamp("2019-10-08")


def _evidence(seed: int, evening_scale: float) -> pd.DataFrame:
    """28 days of six brands' hours with standard normal z, times `evening_scale` from 18:00."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(START, periods=28 * 24, freq="h")
    frames = []
    for brand in "abcdef":
        z = rng.normal(0.0, 1.0, len(hours))
        z = np.where(hours.hour >= 18, z * evening_scale, z)
        frames.append(
            pd.DataFrame(
                {"brand": brand, "window_start": hours, "hour_of_day": hours.hour, "z_hour": z, "phi": 1.0}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _all_eligible(evidence: pd.DataFrame) -> pd.DataFrame:
    return evidence[["brand", "window_start"]]


def _measured(evidence: pd.DataFrame) -> dict:
    """The pooled calibration of every hour of `evidence`, none of them injected."""
    none_injected = pd.DataFrame({"brand": [], "window_start": pd.to_datetime([])})
    ordinary = calibration.ordinary_hours(evidence, none_injected, _all_eligible(evidence))
    return calibration.pooled([calibration.calibration(ordinary)])


def test_a_calibrated_evidence_has_mean_square_one_and_no_spread_by_hour_of_day():
    evidence = _evidence(1, evening_scale=1.0)
    measured = _measured(evidence)
    assert measured["all"]["hours"] == len(evidence)
    assert measured["all"]["mean_z2"] == pytest.approx(1.0, abs=0.06)
    assert measured["all"]["tail_3"] < 0.006
    assert measured["cells"] == 24  # six brands × four parts of the day
    assert measured["cell_spread_ratio"] == pytest.approx(1.0, abs=0.5)


def test_a_dispersion_that_grows_in_the_evening_shows_in_its_part_and_in_the_spread():
    evidence = _evidence(2, evening_scale=1.6)
    measured = _measured(evidence)
    assert measured["by_part"]["evening 18-23"]["mean_z2"] == pytest.approx(2.56, rel=0.12)
    assert measured["by_part"]["morning 06-11"]["mean_z2"] == pytest.approx(1.0, abs=0.12)
    assert measured["cell_spread_ratio"] > 5


def test_hours_near_an_injected_incident_are_not_ordinary():
    evidence = _evidence(3, evening_scale=1.0)
    incident = START + pd.Timedelta(days=10, hours=12)
    truth = pd.DataFrame({"brand": ["a", "a"], "window_start": [incident, incident + pd.Timedelta(hours=1)]})
    ordinary = calibration.ordinary_hours(evidence, truth, _all_eligible(evidence))
    left_out = evidence.merge(ordinary, how="left", indicator=True)
    left_out = left_out[left_out["_merge"] == "left_only"]
    # the two injected hours and EDGE_HOURS either side, of brand a only
    assert set(left_out["brand"]) == {"a"}
    assert sorted(left_out["window_start"]) == list(
        pd.date_range(incident - pd.Timedelta(hours=2), incident + pd.Timedelta(hours=3), freq="h")
    )
