"""The four gold tables from silver two ways, in one warm JVM: as the assets build them (each
table aggregates silver's events), and from one shared session × user pre-aggregation (the
lever issue #14 names). Run after a batch run has built silver, for example:

    FUNNELPULSE_HOME=/tmp/bench30 .venv/bin/dagster asset materialize -m funnelpulse_dagster.definitions \
        --select 'group:bronze or group:silver' --partition-range 2019-10-01...2019-10-30
    .venv/bin/python benchmarks/gold_variants.py --lake /tmp/bench30/tables --start 2019-10-01 --days 30

Each variant runs `--repeat` times (the last is the warm figure); outputs go to a temporary lake
and the variants' tables are compared row for row, so a faster variant must also be equal.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.lake import Lake
from funnelpulse_dagster.resources.spark import classic_session, spark_conf
from funnelpulse_dagster.tables import (
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    SILVER_EVENTS,
)
from funnelpulse_dagster.transforms import gold

STEPS = gold.FUNNEL_STEPS


def preaggregate(silver: DataFrame) -> DataFrame:
    """One row per day × hour × brand × category × price band × session × user."""
    hour = F.date_trunc("hour", F.col("event_time")).alias("hour")
    keys = ["event_date", hour, "brand_norm", "category_root", "price_band", "user_session", "user_id"]
    flags = [F.max((F.col("event_type") == step).cast("byte")).alias(step) for step in STEPS]
    return silver.groupBy(*keys).agg(*gold.funnel_aggregations(), *flags)


def metrics_from_preaggregate(pre: DataFrame, grain: list[str]) -> DataFrame:
    per_session = pre.groupBy(*grain, "user_session").agg(
        *gold._sum_event_metrics(), *[F.max(step).alias(step) for step in STEPS]
    )
    has_session = F.col("user_session").isNotNull()
    sessions = [
        F.coalesce(F.sum(F.when(has_session, F.col(s))), F.lit(0)).cast("long").alias(f"{s}_sessions")
        for s in STEPS
    ]
    metrics = per_session.groupBy(*grain).agg(*gold._sum_event_metrics(), *sessions)
    users = (
        pre.filter(F.col("user_id").isNotNull())
        .groupBy(*grain, "user_id")
        .agg(*[F.max(step).alias(step) for step in STEPS])
        .groupBy(*grain)
        .agg(*[F.sum(step).cast("long").alias(f"{step}_users") for step in STEPS])
    )
    return (
        gold._left_join_on_grain(metrics, users, grain)
        .fillna(0, subset=[f"{s}_users" for s in STEPS])
        .transform(gold.add_funnel_rates)
    )


def _hourly(pre: DataFrame) -> DataFrame:
    return (
        pre.withColumn("window_start", F.col("hour"))
        .withColumn("window_end", F.col("hour") + F.expr("INTERVAL 1 HOUR"))
        .withColumn("window_date", F.to_date("hour"))
    )


def _from_preaggregate(table, grain, prepare):
    return lambda pre: metrics_from_preaggregate(prepare(pre), grain).select(*table.schema.fieldNames())


VARIANTS = {
    "per_table": (
        None,
        {
            GOLD_FUNNEL_HOURLY_BRAND: gold.hourly_brand_funnel,
            GOLD_FUNNEL_DAILY_BRAND: gold.daily_brand_funnel,
            GOLD_FUNNEL_DAILY_CATEGORY: gold.daily_category_funnel,
            GOLD_FUNNEL_HOURLY_PRICE_BAND: gold.hourly_price_band_funnel,
        },
    ),
    "shared_preaggregate": (
        preaggregate,
        {
            GOLD_FUNNEL_HOURLY_BRAND: _from_preaggregate(
                GOLD_FUNNEL_HOURLY_BRAND,
                ["window_date", "window_start", "window_end", "brand"],
                lambda p: _hourly(p).withColumn("brand", F.col("brand_norm")),
            ),
            GOLD_FUNNEL_DAILY_BRAND: _from_preaggregate(
                GOLD_FUNNEL_DAILY_BRAND,
                ["date", "brand"],
                lambda p: p.withColumn("date", F.col("event_date")).withColumn("brand", F.col("brand_norm")),
            ),
            GOLD_FUNNEL_DAILY_CATEGORY: _from_preaggregate(
                GOLD_FUNNEL_DAILY_CATEGORY,
                ["date", "category_root"],
                lambda p: p.withColumn("date", F.col("event_date")),
            ),
            GOLD_FUNNEL_HOURLY_PRICE_BAND: _from_preaggregate(
                GOLD_FUNNEL_HOURLY_PRICE_BAND,
                ["window_date", "window_start", "window_end", "price_band"],
                _hourly,
            ),
        },
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lake", required=True, help="a lake whose silver_events holds the days")
    parser.add_argument("--start", default="2019-10-01")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    spark = classic_session(spark_conf("local[*]", "6g", 8, {}))
    days = [date.fromisoformat(args.start) + timedelta(days=i) for i in range(args.days)]
    source = Lake(args.lake)
    out_root = tempfile.mkdtemp(prefix="gold_variants_")
    for name, (prepare, builders) in VARIANTS.items():
        out = Lake(f"{out_root}/{name}")
        for attempt in range(args.repeat):
            started, seconds = time.perf_counter(), {}
            shared = source.read(spark, SILVER_EVENTS, days).select(*gold.GOLD_INPUT_COLUMNS)
            if prepare is not None:
                shared = prepare(shared)
            shared = shared.persist(StorageLevel.MEMORY_AND_DISK)
            for table, build in builders.items():
                step = time.perf_counter()
                out.replace_partitions(build(shared), table, days)
                seconds[table.name] = round(time.perf_counter() - step, 1)
            shared.unpersist()
            print(
                f"{name} run {attempt + 1}: {round(time.perf_counter() - started, 1)} s {seconds}", flush=True
            )
    for table in VARIANTS["per_table"][1]:
        a = Lake(f"{out_root}/per_table").read(spark, table, days)
        b = Lake(f"{out_root}/shared_preaggregate").read(spark, table, days)
        differ = a.exceptAll(b).count() + b.exceptAll(a).count()
        print(f"{table.name}: {'equal' if differ == 0 else f'{differ} rows differ'}")


if __name__ == "__main__":
    main()
