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


def _scored(method: str, setting: str, all_counts: tuple[int, int, int], reach: tuple[int, int, int]) -> dict:
    return {
        "method": method,
        "setting": setting,
        "all": dict(zip(("tp", "fp", "fn"), all_counts)),
        "within_reach": dict(zip(("tp", "fp", "fn"), reach)),
    }


def test_a_setting_is_chosen_for_precision_first_then_recall_within_reach_summed_over_scenarios():
    """Two scenarios' counts, summed before any rate (hand-computed): "loose" has the best F1
    within reach (0.926) but a precision of 97 / 100, under the floor of 0.98; of the two
    settings at or over it, "middle" (98 / 100, F1 within reach 0.913) beats "strict" (82 / 83,
    0.835). A method with no setting at the floor keeps its most precise one."""
    assert alternatives.PRECISION_FIRST == 0.98
    # per setting of ours, its counts (all, within reach) in the first and the second scenario;
    # within reach: loose 94 / 97 precise and 94 / 106 recall, middle 94 / 96 and 94 / 110,
    # strict 81 / 82 and 81 / 112
    ours = {
        "loose": (((50, 2, 10), (48, 2, 6)), ((47, 1, 13), (46, 1, 6))),
        "middle": (((48, 0, 12), (45, 0, 9)), ((50, 2, 10), (49, 2, 7))),
        "strict": (((40, 0, 20), (40, 0, 14)), ((42, 1, 18), (41, 1, 17))),
    }
    # another method, the same in both scenarios
    other = [
        _scored("other", "a", (30, 20, 10), (30, 20, 5)),
        _scored("other", "b", (20, 5, 20), (20, 5, 15)),
    ]
    results = [
        {
            "alternatives": other,
            "gate_sweep": [_scored("ours", name, *counts[i]) for name, counts in ours.items()],
        }
        for i in range(2)
    ]
    assert alternatives.choose(results, ("gate_sweep",)) == {"ours": "middle"}
    assert alternatives.choose(results) == {"other": "b"}  # 40 / 50 against 60 / 100
    # the first scenario alone: loose's 50 / 52 is under the floor, middle's 48 / 48 is not
    assert alternatives.choose(results[:1], ("gate_sweep",)) == {"ours": "middle"}
