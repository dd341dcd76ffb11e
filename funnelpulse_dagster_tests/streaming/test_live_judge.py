"""The live judge (streaming/live_judge.py) on hand-made hours written to a real lake: an hour
that has ended is judged provisionally from the open state, before the watermark closes it; its
final verdict, when it closes, replaces the provisional one. The expectation is the series' own
construction (two brands that lost 90 % of their purchases in four evening hours), not the
detector's output."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.streaming.live_judge import LiveJudge
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    LIVE_OPEN_HOURLY_BRAND,
    PROVISIONAL_SOURCE,
    STREAM_SOURCE,
)
from funnelpulse_evaluation.series import JUDGED, series, with_drop

# three detector runs over a lake: once, in the Connect pass (the shorter of the two passes, which
# run side by side); the in-process pass runs the same judge inside its streaming tests' run
pytestmark = [pytest.mark.slow, pytest.mark.connect_pass]

# purchases fall 90 % from 17:00 to 21:00, for the big brand and the steady one (half its size,
# whose drop needs two hours of evidence: its first hour is flagged by a run that reaches back)
DROP_HOURS = range(17, 21)
BRANDS = ("big", "steady")


def _drop(hours) -> set[tuple[str, int, str]]:
    return {(brand, hour, "drop") for brand in BRANDS for hour in hours}


def _at(hour: int) -> datetime:
    return datetime(JUDGED.year, JUDGED.month, JUDGED.day) + timedelta(hours=hour)


def _gold_rows(rows: list[tuple]) -> list[tuple]:
    """The series' hours in the hourly tables' columns (one session per view and per purchase)."""
    full = []
    for start, end, brand, views, purchases, rate, view_sessions, purchase_sessions, day in rows:
        values = {
            "window_start": start,
            "window_end": end,
            "brand": brand,
            "views": views,
            "carts": purchases,
            "remove_from_carts": 0,
            "purchases": purchases,
            "revenue": None,
            "view_sessions": view_sessions,
            "cart_sessions": purchase_sessions,
            "purchase_sessions": purchase_sessions,
            "view_users": view_sessions,
            "cart_users": purchase_sessions,
            "purchase_users": purchase_sessions,
            "view_to_cart_rate": purchases / views,
            "cart_to_purchase_rate": 1.0 if purchases else None,
            "conversion_rate": rate,
            "session_conversion_rate": purchase_sessions / view_sessions,
            "window_date": day,
        }
        full.append(values)
    return full


def _frame(spark, rows: list[dict], table, **extra):
    names = table.schema.fieldNames()
    return spark.createDataFrame([tuple({**r, **extra}[n] for n in names) for r in rows], table.schema)


def _verdicts(spark, lake: Lake) -> dict[str, set[tuple[str, int, str]]]:
    """(brand, hour of the judged day, type) of every stored verdict, by source; a brand-hour
    holds one verdict at most."""
    found: dict[str, set] = {}
    rows = (
        lake.read(spark, GOLD_ANOMALIES_HOURLY_BRAND).filter(F.col("window_date") == F.lit(JUDGED)).collect()
    )
    for r in rows:
        found.setdefault(r["source"], set()).add((r["brand"], r["window_start"].hour, r["anomaly_type"]))
    hours = [(r["brand"], r["window_start"]) for r in rows]
    assert len(hours) == len(set(hours)), f"a brand-hour with two verdicts: {sorted(hours)}"
    return found


def _evidence_ends(spark, lake: Lake, source: str) -> dict[int, datetime]:
    """The judged day's hours flagged by `source`, with the end of the hour whose evidence made each a flag."""
    table = lake.read(spark, GOLD_ANOMALIES_HOURLY_BRAND).filter(
        (F.col("window_date") == F.lit(JUDGED)) & (F.col("source") == source)
    )
    return {r["window_start"].hour: r["detectable_at"] for r in table.collect()}


def test_an_ended_hour_is_judged_before_it_closes_and_its_final_verdict_replaces_it(spark, tmp_path):
    lake = Lake(str(tmp_path / "tables"))
    hours = _gold_rows(
        with_drop(series(15, ("big", JUDGED, DROP_HOURS)), "steady", {_at(h) for h in DROP_HOURS})
    )

    def of_judged_day(first: int, last: int) -> list[dict]:
        return [r for r in hours if r["window_date"] == JUDGED and first <= r["window_start"].hour <= last]

    def publish_open_state(version: int, first: int, last: int, as_of: datetime) -> None:
        rows = of_judged_day(first, last)
        frame = _frame(spark, rows, LIVE_OPEN_HOURLY_BRAND, as_of=as_of, version=version)
        lake.replace_where(frame, LIVE_OPEN_HOURLY_BRAND, f"version = {version}")

    def close(first: int, last: int) -> None:
        rows = _frame(spark, of_judged_day(first, last), GOLD_STREAM_FUNNEL_HOURLY_BRAND)
        closed = lake.read(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND).unionByName(rows).localCheckpoint()
        lake.replace_partitions(closed, GOLD_STREAM_FUNNEL_HOURLY_BRAND, [JUDGED])

    # batch holds the two weeks before; the stream has closed the judged day up to 17:00, and its
    # open state holds 17:00–19:40: two ended hours of the drop and one still running
    history = [r for r in hours if r["window_date"] < JUDGED]
    days = sorted({r["window_date"] for r in history})
    lake.replace_partitions(_frame(spark, history, GOLD_FUNNEL_HOURLY_BRAND), GOLD_FUNNEL_HOURLY_BRAND, days)
    close(0, 16)
    judge = LiveJudge.starting_now(spark, lake, log=print)
    publish_open_state(1, 17, 19, as_of=_at(19) + timedelta(minutes=40))
    judge.finish()

    verdicts = _verdicts(spark, lake)
    provisional = verdicts.get(PROVISIONAL_SOURCE, set())
    # the drops are flagged in the ended hours, before the watermark closes them; the running hour
    # (19:00, 40 minutes of it) is not judged, and no other brand is flagged
    assert provisional == _drop((17, 18))
    assert not verdicts.get(STREAM_SOURCE)
    assert judge.provisional_anomalies == len(provisional)

    # 17:00 closes while 18:00, whose evidence flagged the steady brand's first hour, is still
    # open: 17:00 stays flagged, finally or (its evidence open) provisionally
    close(17, 17)
    publish_open_state(2, 18, 19, as_of=_at(19) + timedelta(minutes=55))
    judge.finish()
    verdicts = _verdicts(spark, lake)
    assert verdicts.get(STREAM_SOURCE, set()) | verdicts.get(PROVISIONAL_SOURCE, set()) == _drop((17, 18))
    assert all(
        end > _at(18) for hour, end in _evidence_ends(spark, lake, PROVISIONAL_SOURCE).items() if hour < 18
    )

    # two hours later: 17:00–18:00 closed, 19:00 and 20:00 ended in the open state, which still
    # holds 18:00 too (it drops an hour an hour after it closes): read from the live table only
    close(18, 18)
    publish_open_state(3, 18, 21, as_of=_at(21) + timedelta(minutes=10))
    judge.finish()

    verdicts = _verdicts(spark, lake)
    final, provisional = verdicts.get(STREAM_SOURCE, set()), verdicts.get(PROVISIONAL_SOURCE, set())
    # the closed hours' final verdicts replaced their provisional ones; a closed hour stays
    # provisional only while a run through an open hour is what flags it
    assert final == _drop((17, 18))
    assert provisional == _drop((19, 20))
    # each closing counts the flags in the hours it closed: the steady brand's 17:00 was flagged
    # finally after it closed, by the run through 18:00
    assert judge.anomalies_in_new_hours == len(final - {("steady", 17, "drop")})
