"""The live judge: after each streaming run, the closed hours of the days it touched are judged
by the same anomaly detector as batch and upserted into gold_anomalies_hourly_brand with
`source = stream` (a later batch run of the day replaces the whole day with its own verdicts)."""

from __future__ import annotations

from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.streaming.job import last_closed_hour
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    SILVER_EVENTS,
    STREAM_EVENTS,
    Table,
)
from funnelpulse_dagster.transforms.anomalies import anomaly_rows, history_days, live_gold, live_silver


def judge_closed_hours(session, lake: Lake, closed_before, log) -> int:
    """Judge the closed hours of the days this run touched with the batch detector and upsert
    them, marked `source = stream`, into gold_anomalies_hourly_brand. The whole day is
    re-judged, not only the new hours: a run that passes the threshold in a new hour also flags
    the earlier hours of the day it reaches back over, exactly as the batch detector does.
    Idempotent: a re-judged hour replaces its earlier live verdict. Returns the number of live
    anomalies in the hours this run closed."""
    closed_after = last_closed_hour(session, lake)
    if closed_after is None or (closed_before is not None and closed_after <= closed_before):
        return 0
    stream_gold = lake.read(session, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
    lo = closed_before or stream_gold.agg(F.min("window_start")).first()[0]
    new_hours = (F.col("window_end") > F.lit(lo)) & (F.col("window_end") <= F.lit(closed_after))
    days = sorted(r[0] for r in stream_gold.filter(new_hours).select("window_date").distinct().collect())
    history = history_days(days)
    gold = live_gold(stream_gold, lake.read(session, GOLD_FUNNEL_HOURLY_BRAND, history))
    stream_events = lake.read(session, STREAM_EVENTS).filter(F.to_date("event_time").isin(history))
    silver = live_silver(stream_gold, lake.read(session, SILVER_EVENTS, history), stream_events)
    closed = F.col("window_end") <= F.lit(closed_after)
    verdicts = anomaly_rows(gold, silver, days, source="stream").filter(closed)
    earlier = lake.read(session, GOLD_ANOMALIES_HOURLY_BRAND, days).filter(
        ~((F.col("source") == "stream") & closed)
    )
    # the files being replaced are read first: cut the lineage before overwriting them
    merged = earlier.localCheckpoint().unionByName(verdicts)
    lake.replace_partitions(merged, GOLD_ANOMALIES_HOURLY_BRAND, days)
    count = verdicts.filter(new_hours).count()
    log(
        f"judged live hours up to {closed_after} ({', '.join(map(str, days))}): {count} anomalies in new hours"
    )
    return count


def newest_state(session, lake: Lake, table: Table) -> tuple[int | None, int, object]:
    """(version, rows, as_of) of the newest published open state of a live table."""
    frame = lake.read(session, table)
    version = frame.agg(F.max("version")).first()[0]
    if version is None:
        return None, 0, None
    rows, as_of = frame.filter(F.col("version") == version).agg(F.count(F.lit(1)), F.max("as_of")).first()
    return version, rows, as_of
