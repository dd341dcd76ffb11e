"""Silver events → funnel metrics at a grain (hour × brand, day × brand, day × category, ...).

One metric definition serves every gold table (and the streaming job's event metrics).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import EVENT_COUNTS, FUNNEL_RATES, FUNNEL_STEPS, REVENUE, Rate
from funnelpulse_dagster.tables import (
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    REVENUE_TYPE,
    Table,
)

# who is counted distinctly per step: column of silver → suffix of the metric
ACTORS = {"user_session": "sessions", "user_id": "users"}


# the silver columns the gold tables read
GOLD_INPUT_COLUMNS = (
    "event_time",
    "event_type",
    "price",
    "user_id",
    "user_session",
    "brand_norm",
    "category_root",
    "price_band",
    "event_date",
)


def _count_of(event_type: str) -> Column:
    return F.count(F.when(F.col("event_type") == event_type, True))


def funnel_aggregations() -> list[Column]:
    """Event counts per type and purchase revenue (exact decimal)."""
    return [_count_of(event_type).alias(metric) for metric, event_type in EVENT_COUNTS.items()] + [
        F.coalesce(F.sum(F.when(F.col("event_type") == EVENT_COUNTS["purchases"], F.col("price"))), F.lit(0))
        .cast(REVENUE_TYPE)
        .alias(REVENUE)
    ]


def add_funnel_rates(metrics: DataFrame, rates: tuple[Rate, ...] = FUNNEL_RATES) -> DataFrame:
    """Each rate = numerator / denominator as a double, NULL where the denominator is 0."""
    for rate in rates:
        if rate.numerator in metrics.columns and rate.denominator in metrics.columns:
            metrics = metrics.withColumn(
                rate.name,
                F.when(F.col(rate.denominator) > 0, F.col(rate.numerator) / F.col(rate.denominator)).cast(
                    "double"
                ),
            )
    return metrics


def _step_flags() -> list[Column]:
    return [F.max((F.col("event_type") == step).cast("int")).alias(step) for step in FUNNEL_STEPS]


# which actor an exploded row counts: its session (and the events) or its user
_SESSION_ROW, _USER_ROW = 0, 1


def _actor_rows(events: DataFrame, grain: list[str]) -> DataFrame:
    """Each event twice: once under its session (`session`, NULL for an event without one),
    once under its user (`user`), told apart by `actor_kind`."""
    as_session = F.struct(
        F.lit(_SESSION_ROW).cast("byte").alias("actor_kind"),
        F.col("user_session").alias("session"),
        F.lit(None).cast("bigint").alias("user"),
    )
    as_user = F.struct(
        F.lit(_USER_ROW).cast("byte").alias("actor_kind"),
        F.lit(None).cast("string").alias("session"),
        F.col("user_id").alias("user"),
    )
    return events.select(
        *grain, "event_type", "price", F.explode(F.array(as_session, as_user)).alias("a")
    ).select(*grain, "event_type", "price", "a.*")


def funnel_metrics(events: DataFrame, grain: list[str]) -> DataFrame:
    """Event counts, revenue, session and user funnels and rates per grain.

    One shuffle: the events are partitioned by the grain, so each cell's sessions and users are
    on one task, and everything after is local. Each event is counted twice there, under its
    session and under its user; one aggregation gives per (cell, actor) the event metrics and
    which steps it took, a second sums them per cell: events and revenue from the session rows
    (events without a session form one NULL-session group, counted as events but not as a
    session), sessions and users from their own rows. Separate session and user aggregations
    joined on the grain would shuffle the events twice and the results twice more, and
    COUNT(DISTINCT) would expand every row seven times (`benchmarks/batch.py` measures it).
    """
    per_actor = (
        events.select(*grain, "event_type", "price", "user_session", "user_id")
        .repartition(*grain)
        .transform(lambda cells: _actor_rows(cells, grain))
        .groupBy(*grain, "actor_kind", "session", "user")
        .agg(*funnel_aggregations(), *_step_flags())
    )
    session_row = F.col("actor_kind") == _SESSION_ROW
    counted = {
        ACTORS["user_session"]: session_row & F.col("session").isNotNull(),
        ACTORS["user_id"]: (F.col("actor_kind") == _USER_ROW) & F.col("user").isNotNull(),
    }

    def total(column: str, where: Column, type_name: str = "long") -> Column:
        return F.coalesce(F.sum(F.when(where, F.col(column))), F.lit(0)).cast(type_name)

    return (
        per_actor.groupBy(*grain)
        .agg(
            *[total(c, session_row).alias(c) for c in EVENT_COUNTS],
            total(REVENUE, session_row, REVENUE_TYPE.simpleString()).alias(REVENUE),
            *[
                total(step, where).alias(f"{step}_{suffix}")
                for suffix, where in counted.items()
                for step in FUNNEL_STEPS
            ],
        )
        .transform(add_funnel_rates)
    )


def with_hour_window(events: DataFrame) -> DataFrame:
    """UTC hour window of each event (the session time zone is UTC)."""
    window_start = F.date_trunc("hour", F.col("event_time"))
    return (
        events.withColumn("window_start", window_start)
        .withColumn("window_end", window_start + F.expr("INTERVAL 1 HOUR"))
        .withColumn("window_date", F.to_date(window_start))
    )


def _gold(events: DataFrame, table: Table, grain: list[str]) -> DataFrame:
    return funnel_metrics(events, grain).select(*table.schema.fieldNames())


def hourly_brand_funnel(silver: DataFrame) -> DataFrame:
    """gold_funnel_hourly_brand: one row per UTC hour × brand; no brand is a NULL group."""
    events = silver.transform(with_hour_window).withColumn("brand", F.col("brand_norm"))
    return _gold(events, GOLD_FUNNEL_HOURLY_BRAND, ["window_date", "window_start", "window_end", "brand"])


def daily_brand_funnel(silver: DataFrame) -> DataFrame:
    """gold_funnel_daily_brand: one row per UTC day × brand."""
    events = silver.withColumn("date", F.col("event_date")).withColumn("brand", F.col("brand_norm"))
    return _gold(events, GOLD_FUNNEL_DAILY_BRAND, ["date", "brand"])


def daily_category_funnel(silver: DataFrame) -> DataFrame:
    """gold_funnel_daily_category: one row per UTC day × category_root (NULL: no category)."""
    events = silver.withColumn("date", F.col("event_date"))
    return _gold(events, GOLD_FUNNEL_DAILY_CATEGORY, ["date", "category_root"])


def hourly_price_band_funnel(silver: DataFrame) -> DataFrame:
    """gold_funnel_hourly_price_band: one row per UTC hour × price band."""
    events = silver.transform(with_hour_window)
    return _gold(
        events, GOLD_FUNNEL_HOURLY_PRICE_BAND, ["window_date", "window_start", "window_end", "price_band"]
    )
