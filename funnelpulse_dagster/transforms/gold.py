"""Silver events → funnel metrics at a grain (hour × brand, day × brand, ...).

One metric definition serves every gold table and the streaming job.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.tables import GOLD_FUNNEL_HOURLY_BRAND, REVENUE_TYPE


def _count_of(event_type: str) -> Column:
    return F.count(F.when(F.col("event_type") == event_type, True))


def _rate(numerator: str, denominator: str) -> Column:
    """numerator / denominator as a double, NULL where the denominator is 0."""
    return F.when(F.col(denominator) > 0, F.col(numerator) / F.col(denominator)).cast("double")


def funnel_aggregations() -> list[Column]:
    return [
        _count_of("view").alias("views"),
        _count_of("cart").alias("carts"),
        _count_of("remove_from_cart").alias("remove_from_carts"),
        _count_of("purchase").alias("purchases"),
        F.coalesce(F.sum(F.when(F.col("event_type") == "purchase", F.col("price"))), F.lit(0))
        .cast(REVENUE_TYPE)
        .alias("revenue"),
    ]


def add_funnel_rates(metrics: DataFrame) -> DataFrame:
    return (
        metrics.withColumn("view_to_cart_rate", _rate("carts", "views"))
        .withColumn("cart_to_purchase_rate", _rate("purchases", "carts"))
        .withColumn("conversion_rate", _rate("purchases", "views"))
    )


def with_hour_window(events: DataFrame) -> DataFrame:
    """UTC hour window of each event (the session time zone is UTC)."""
    window_start = F.date_trunc("hour", F.col("event_time"))
    return (
        events.withColumn("window_start", window_start)
        .withColumn("window_end", window_start + F.expr("INTERVAL 1 HOUR"))
        .withColumn("window_date", F.to_date(window_start))
    )


def hourly_brand_funnel(silver: DataFrame) -> DataFrame:
    """gold_funnel_hourly_brand: one row per UTC hour × brand; no brand is a NULL group."""
    return (
        silver.transform(with_hour_window)
        .groupBy("window_date", "window_start", "window_end", F.col("brand_norm").alias("brand"))
        .agg(*funnel_aggregations())
        .transform(add_funnel_rates)
        .select(*GOLD_FUNNEL_HOURLY_BRAND.schema.fieldNames())
    )
