"""The published detectors the evaluation compares ours with (funnelpulse_evaluation/alternatives.py),
checked on data whose truth is known: quantiles from statistical tables, noise with planted outliers,
and Poisson counts drawn from a known brand × hour × weekday model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from funnelpulse_evaluation import alternatives

START = pd.Timestamp("2019-10-01")


@pytest.mark.parametrize(
    ("p", "dof", "table"),
    # Student's t quantiles from the standard tables
    [(0.975, 100, 1.98397), (0.999, 30, 3.38518), (0.9995, 600, 3.30837)],
)
def test_t_quantiles_match_the_tables(p, dof, table):
    assert alternatives._t_quantile(p, dof) == pytest.approx(table, abs=2e-3)


def test_generalized_esd_finds_the_planted_outliers_and_nothing_else():
    rng = np.random.default_rng(7)
    values = rng.normal(0, 1, 600)
    planted = [40, 311, 502]
    values[planted] = [9.0, -8.5, 7.5]
    found = alternatives.generalized_esd(values, max_anoms=12, alpha=0.001)
    assert sorted(found.tolist()) == planted
    assert len(alternatives.generalized_esd(rng.normal(0, 1, 600), max_anoms=12, alpha=0.001)) == 0


def _poisson_shop(seed: int, anomalies: dict[tuple[str, pd.Timestamp], float]) -> pd.DataFrame:
    """35 days of two brands: viewing sessions with a daily rhythm, purchasing sessions Poisson with
    a brand × hour-of-day × weekday rate, times the factor of any planted anomaly."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(35):
        for hour in range(24):
            at = START + pd.Timedelta(days=day, hours=hour)
            for brand, peak, base in (("big", 900, 0.05), ("small", 250, 0.08)):
                views = int(rng.poisson(peak * (0.3 + 0.7 * np.sin(np.pi * hour / 24) ** 2)))
                rate = base * (1 + 0.3 * np.cos(np.pi * hour / 12)) * (1.25 if at.weekday() == 3 else 1.0)
                rate *= anomalies.get((brand, at), 1.0)
                rows.append((brand, at, 2 * views, views, int(rng.poisson(views * rate))))
    return pd.DataFrame(
        rows, columns=["brand", "window_start", "views", "view_sessions", "purchase_sessions"]
    )


def test_the_quasi_poisson_model_fits_a_known_shop_and_flags_what_was_planted():
    drop_at = START + pd.Timedelta(days=20, hours=14)
    spike_at = START + pd.Timedelta(days=26, hours=19)
    gold = _poisson_shop(3, {("big", drop_at): 0.2, ("small", spike_at): 3.0})
    judged = alternatives.quasi_poisson_residuals(gold, START + pd.Timedelta(days=7))
    ordinary = judged[~judged["window_start"].isin([drop_at, spike_at])]
    # a right model leaves standard normal residuals (Poisson counts, no over-dispersion)
    assert ordinary["residual"].std() == pytest.approx(1.0, abs=0.1)
    assert abs(ordinary["residual"].mean()) < 0.1
    flags = alternatives.flags_beyond(judged, judged["residual"], 4.5)
    assert set(map(tuple, flags[["brand", "window_start", "flag"]].to_numpy())) == {
        ("big", drop_at, "drop"),
        ("small", spike_at, "spike"),
    }


def test_seasonal_hybrid_esd_flags_a_planted_spike_on_its_day_only():
    spike_at = START + pd.Timedelta(days=26, hours=19)
    gold = _poisson_shop(5, {("big", spike_at): 4.0})
    flags = alternatives.shesd_flags(gold, START + pd.Timedelta(days=7), alpha=0.001)
    assert ("big", spike_at, "spike") in set(map(tuple, flags[["brand", "window_start", "flag"]].to_numpy()))
    # each flag falls on a judged day, never in the history before the first one
    assert (flags["window_start"] >= START + pd.Timedelta(days=7)).all()


@pytest.mark.slow  # the evaluation harness's cache, not the product
def test_a_kept_work_folder_reuses_the_alternatives_flags_until_the_gold_changes(tmp_path, monkeypatch):
    from funnelpulse_evaluation import scenarios

    fits = []
    fit = scenarios.alternative_flags
    monkeypatch.setattr(scenarios, "alternative_flags", lambda *a: fits.append(1) or fit(*a))
    spike_at = START + pd.Timedelta(days=26, hours=19)
    gold = _poisson_shop(3, {("small", spike_at): 3.0})
    judged_from = START + pd.Timedelta(days=7)

    first = scenarios.kept_alternative_flags(gold, judged_from, tmp_path)
    # the same gold in another row order is the same gold: read back, not fitted again
    again = scenarios.kept_alternative_flags(gold.sample(frac=1.0, random_state=1), judged_from, tmp_path)
    assert len(fits) == 1
    assert [(m, s) for m, s, _ in again] == [(m, s) for m, s, _ in first]
    assert any(len(flags) for _, _, flags in first)
    for (_, _, fitted), (_, _, kept) in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(kept, fitted.reset_index(drop=True), check_dtype=False)
        assert kept["window_start"].dtype == fitted["window_start"].dtype

    changed = gold.assign(purchase_sessions=gold["purchase_sessions"] + 1)
    scenarios.kept_alternative_flags(changed, judged_from, tmp_path)
    assert len(fits) == 2
    assert len(list(tmp_path.glob("alternative_flags-*.json"))) == 1
