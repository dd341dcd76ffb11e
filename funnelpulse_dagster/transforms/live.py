"""The open state of the live funnel: what the stream has published that no closed hour holds yet.

The closed hourly table only gets an hour once the watermark passes its end (two hours late by
design: late events must still count). Watching needs the hours still open, as of the newest
event. They are computed from the published stream events after the last closed hour, with the
batch transforms themselves (the silver rules, batch's exact de-duplication on the event key, the
gold metrics), so an open hour shows the numbers its closed row will have once no event arrives
late, and a recount of the events sent agrees with it.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.tables import LIVE_MINUTE_FUNNEL, LIVE_OPEN_HOURLY_BRAND, SHOP_SCOPE
from funnelpulse_dagster.transforms.gold import funnel_metrics, hourly_brand_funnel
from funnelpulse_dagster.transforms.silver import to_silver


def open_silver(stream_events: DataFrame, closed_end: datetime | None) -> DataFrame:
    """Silver of the events in hours not closed yet (all events before the first closed hour)."""
    events = (
        stream_events
        if closed_end is None
        else stream_events.filter(F.col("event_time") >= F.lit(closed_end))
    )
    return to_silver(events)


def open_hourly_brand(silver: DataFrame, version: int, as_of: datetime) -> DataFrame:
    """The open hours per brand: the closed table's columns, `as_of` (the newest event time in
    `silver`), `version`."""
    return (
        hourly_brand_funnel(silver)
        .withColumn("as_of", F.lit(as_of).cast("timestamp"))
        .withColumn("version", F.lit(version).cast("long"))
        .select(*LIVE_OPEN_HOURLY_BRAND.schema.fieldNames())
    )


def minute_funnel(
    silver: DataFrame, version: int, as_of: datetime, minutes: int, top_brands: int
) -> DataFrame:
    """`minutes`-long windows for the shop and for the `top_brands` brands with the most views in
    the open hours: the event funnel, revenue, viewing and purchasing sessions, conversion."""
    window = F.window("event_time", f"{minutes} minutes")
    timed = silver.withColumn("window_start", window.start).withColumn("window_end", window.end)
    top = [
        r["brand_norm"]
        for r in silver.filter(F.col("brand_norm").isNotNull() & (F.col("event_type") == "view"))
        .groupBy("brand_norm")
        .count()
        .orderBy(F.desc("count"), "brand_norm")
        .limit(top_brands)
        .collect()
    ]
    shop = timed.withColumn("scope", F.lit(SHOP_SCOPE))
    brands = timed.filter(F.col("brand_norm").isin(top)).withColumn("scope", F.col("brand_norm"))
    return (
        funnel_metrics(shop.unionByName(brands), ["window_start", "window_end", "scope"])
        .withColumn("as_of", F.lit(as_of).cast("timestamp"))
        .withColumn("version", F.lit(version).cast("long"))
        .select(*LIVE_MINUTE_FUNNEL.schema.fieldNames())
    )
