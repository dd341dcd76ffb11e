"""The generator stays calibrated to dataset-facts.md and is deterministic."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from funnelpulse_dagster.generator import TARGET_EVENT_MIX, AnomalySpec, Holiday, generate


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    summary = generate(
        out,
        date(2019, 10, 1),
        7,
        seed=3,
        events_per_day=40_000,
        anomalies=2,
        ground_truth_path=out / "truth.csv",
    )
    frame = pd.read_csv(out / "2019-Oct.csv", dtype=str, keep_default_na=False, on_bad_lines="skip")
    # the well-formed rows only (the generator also writes malformed lines on purpose)
    valid_time = pd.to_datetime(frame.event_time, format="%Y-%m-%d %H:%M:%S UTC", errors="coerce").notna()
    frame = frame[frame.event_type.isin(TARGET_EVENT_MIX.keys()) & valid_time]
    return out, summary, frame


def test_event_mix_within_three_points(week):
    _, _, frame = week
    mix = frame.event_type.value_counts(normalize=True)
    for event_type, share in TARGET_EVENT_MIX.items():
        assert abs(mix[event_type] - share) <= 0.03, (event_type, mix[event_type])


def test_null_shares_price_and_dirty_values(week):
    _, _, frame = week
    assert abs((frame.brand == "").mean() - 0.42) <= 0.03
    assert abs((frame.category_code == "").mean() - 0.98) <= 0.01
    assert (frame.user_session == "").mean() < 0.002
    price = pd.to_numeric(frame.price, errors="coerce")
    assert 3.6 <= price.median() <= 4.5
    assert (price < 0).sum() >= 2 and ((price < 0) & (frame.brand != "")).sum() == 0
    assert 0.002 <= (price == 0).mean() <= 0.01
    # duplicated remove_from_cart rows: ≈ 25 % of them
    removes = frame[frame.event_type == "remove_from_cart"]
    dup = removes.duplicated(["user_session", "event_time", "product_id", "event_type"]).mean()
    assert 0.20 <= dup <= 0.30


def test_daily_rhythm_and_brand_concentration(week):
    _, _, frame = week
    hours = frame.event_time.str[11:13].astype(int).value_counts()
    assert hours.idxmax() in (18, 19, 20) and hours.idxmin() in (0, 1, 2)
    assert 5 <= hours.max() / hours.min() <= 11
    top_brand_share = frame[frame.brand != ""].brand.value_counts().iloc[0] / len(frame)
    assert 0.05 <= top_brand_share <= 0.09


def test_malformed_lines_and_ground_truth(week):
    out, summary, _ = week
    assert all(n == 1 for n in summary.malformed.values())
    with open(out / "truth.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {r["anomaly_type"] for r in rows} <= {"drop", "spike"}


def test_deterministic_for_a_seed(tmp_path):
    a = generate(tmp_path / "a", date(2019, 11, 30), 2, seed=11, events_per_day=500)
    b = generate(tmp_path / "b", date(2019, 11, 30), 2, seed=11, events_per_day=500)
    assert [p.split("/")[-1] for p in a.files] == ["2019-Nov.csv", "2019-Dec.csv"]
    for fa, fb in zip(a.files, b.files, strict=True):
        assert Path(fa).read_bytes() == Path(fb).read_bytes()


def test_visible_anomalies_are_placed_where_a_demo_can_find_them(tmp_path):
    """Drops and spikes in turn, on the three busiest brands (by the data written), in busy
    hours, one a day from the eighth day, strong enough to stand out."""
    summary = generate(
        tmp_path / "raw", date(2019, 10, 1), 14, seed=3, events_per_day=20_000, anomalies=6,
        visible_anomalies=True, ground_truth_path=tmp_path / "truth.csv",
    )  # fmt: skip
    truth = pd.read_csv(tmp_path / "truth.csv")
    frame = pd.concat(pd.read_csv(p) for p in (tmp_path / "raw").glob("*.csv"))
    busiest = frame["brand"].dropna().value_counts().index[:3]
    assert list(truth["anomaly_type"]) == ["drop", "spike"] * 3
    assert set(truth["brand"]) <= set(busiest)
    starts = pd.to_datetime(truth["window_start"])
    assert [s.day for s in starts] == [8, 9, 10, 11, 12, 13]
    assert all(11 <= s.hour and s.hour + h <= 21 for s, h in zip(starts, truth["hours"], strict=True))
    drops, spikes = truth[truth["anomaly_type"] == "drop"], truth[truth["anomaly_type"] == "spike"]
    assert drops["magnitude"].between(0.85, 0.95).all() and spikes["magnitude"].between(2.5, 3.0).all()
    assert len(summary.anomalies) == 6


def _events(raw: Path) -> pd.DataFrame:
    frame = pd.concat(
        pd.read_csv(p, dtype={"price": str}, on_bad_lines="skip") for p in sorted(raw.glob("*.csv"))
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"], format="%Y-%m-%d %H:%M:%S UTC", errors="coerce")
    return frame[frame["event_time"].notna() & frame["event_type"].isin(TARGET_EVENT_MIX.keys())]


@pytest.mark.slow  # generates days; the quick lane keeps the generator's statistics
def test_planned_anomalies_land_where_the_plan_puts_them(tmp_path):
    """The same shop with and without a plan: outside the planned hours the data is the same;
    inside, the planned brand loses (drop) or gains (spike) purchases by about the planned size."""
    plan = [AnomalySpec(0, 2, 12, 3, "drop", 0.9), AnomalySpec(1, 3, 18, 2, "spike", 2.0)]
    kwargs = {"seed": 4, "events_per_day": 80_000}
    generate(tmp_path / "clean", date(2019, 10, 1), 5, **kwargs)
    generate(
        tmp_path / "hit",
        date(2019, 10, 1),
        5,
        anomaly_plan=plan,
        ground_truth_path=tmp_path / "t.csv",
        **kwargs,
    )
    truth = pd.read_csv(tmp_path / "t.csv")
    assert list(truth["window_start"]) == ["2019-10-03T12:00:00Z", "2019-10-04T18:00:00Z"]
    assert list(truth["hours"]) == [3, 2] and list(truth["anomaly_type"]) == ["drop", "spike"]
    clean, hit = _events(tmp_path / "clean"), _events(tmp_path / "hit")
    for (_, a), spec in zip(truth.iterrows(), plan, strict=True):
        start = pd.Timestamp(a["window_start"]).tz_localize(None)
        window = lambda f, a=a, start=start: f[
            (f["brand"] == a["brand"]) & (f["event_time"] >= start)
            & (f["event_time"] < start + pd.Timedelta(hours=int(a["hours"])))
        ]  # fmt: skip
        before = (window(clean)["event_type"] == "purchase").sum()
        after = (window(hit)["event_type"] == "purchase").sum()
        assert before > 20
        if spec.anomaly_type == "drop":
            assert after <= before * 0.2
        else:
            assert after >= before * 2.5
    # the brand ranks are the generator's own volume order: the first is among the busiest
    busiest = clean["brand"].dropna().value_counts().index[:3]
    assert truth["brand"].iloc[0] in busiest
    with pytest.raises(ValueError, match="drop or spike"):
        generate(tmp_path / "bad", date(2019, 10, 1), 2, anomaly_plan=[AnomalySpec(0, 1, 3, 2, "dip", 0.5)])


@pytest.mark.slow  # generates days; the quick lane keeps the generator's statistics
def test_shop_factors_change_the_brand_curve_and_the_weekly_rhythm(tmp_path):
    """A steeper brand curve gives the busiest brand a larger share; weekly_strength=0 gives
    every weekday the same volume (within the daily noise), 2.5 widens the real rhythm; a
    conversion swing makes the busiest weekday buy more than the quietest."""

    def shop(name, **kwargs):
        generate(tmp_path / name, date(2019, 10, 7), 7, seed=9, events_per_day=20_000, **kwargs)
        return _events(tmp_path / name)

    def top_share(frame):
        return frame["brand"].value_counts().iloc[0] / len(frame)

    def weekday_spread(frame):
        per_day = frame.groupby(frame["event_time"].dt.weekday).size()
        return per_day.max() / per_day.min()

    def conversion(frame, weekday):
        day = frame[frame["event_time"].dt.weekday == weekday]
        return (day["event_type"] == "purchase").sum() / (day["event_type"] == "view").sum()

    default, steep, flat_week, strong = (
        shop("default"),
        shop("steep", top_brand_share=0.14),
        shop("flat", weekly_strength=0.0),
        shop("strong", weekly_strength=2.5, weekday_conversion_swing=0.15),
    )
    assert top_share(steep) > 1.6 * top_share(default)
    assert weekday_spread(flat_week) < 1.15
    assert 1.3 < weekday_spread(default) < weekday_spread(strong)
    # Thursday (3) buys most under the swing, Saturday (5) least
    assert conversion(strong, 3) > 1.15 * conversion(strong, 5)


@pytest.mark.slow  # generates days; the quick lane keeps the generator's statistics
def test_a_holiday_makes_every_brand_busier_and_buy_more_on_its_days(tmp_path):
    """On a holiday's days the shop has its traffic × the day's events and its conversion ×
    the share of viewing sessions that buy, in the whole shop and in its busiest brands alike
    (together: one brand's few buying sessions here are too noisy to tell); the days around it
    stay ordinary."""
    holiday = Holiday(first_day=3, days=2, traffic=3.0, conversion=1.5)
    generate(
        tmp_path, date(2019, 10, 7), 7, seed=5, events_per_day=20_000, weekly_strength=0.0, holiday=holiday
    )
    frame = _events(tmp_path)
    frame["day"] = (frame["event_time"].dt.normalize() - pd.Timestamp("2019-10-07")).dt.days
    frame["on_holiday"] = frame["day"].map(holiday.covers)
    per_day = frame.groupby("day").size()
    ordinary, busy = per_day[~per_day.index.map(holiday.covers)], per_day[per_day.index.map(holiday.covers)]
    assert 2.6 < busy.mean() / ordinary.mean() < 3.4

    def session_conversion(rows):
        kinds = rows.groupby("user_session")["event_type"].agg(set)
        viewing = kinds[kinds.map(lambda k: "view" in k)]
        return viewing.map(lambda k: "purchase" in k).mean()

    busiest = frame[frame["brand"].isin(frame["brand"].value_counts().index[:10])]
    for name, rows in (("shop", frame), ("busiest brands", busiest)):
        lift = session_conversion(rows[rows["on_holiday"]]) / session_conversion(rows[~rows["on_holiday"]])
        assert 1.3 < lift < 1.7, (name, lift)
