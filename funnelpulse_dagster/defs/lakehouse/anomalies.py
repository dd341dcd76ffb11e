"""Anomalies of hourly brand conversion, judged against earlier days only."""

from dagster import (
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from funnelpulse_dagster.lib.partitions import (
    ROW_COUNT,
    daily_partitions,
    partition_days,
    report_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import check_spec, explained, incident_list
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import EVERY_ANOMALY_EXPLAINED, LOOKBACK_DAYS
from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND, GOLD_FUNNEL_HOURLY_BRAND, SILVER_EVENTS
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.anomalies import anomaly_rows, history_days

# a day's verdicts read that day and the LOOKBACK_DAYS (+1 for the previous evening's evidence)
# before it, never a later day
_TRAILING_WINDOW = TimeWindowPartitionMapping(
    start_offset=-(LOOKBACK_DAYS + 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


@asset(
    name=GOLD_ANOMALIES_HOURLY_BRAND.name,
    deps=[
        AssetDep(GOLD_FUNNEL_HOURLY_BRAND.name, partition_mapping=_TRAILING_WINDOW),
        AssetDep(SILVER_EVENTS.name, partition_mapping=_TRAILING_WINDOW),
    ],
    description="Brand-hours whose conversion broke from the brand's own history (earlier days "
    "only): drop or spike, score, expected vs observed, severity, root-cause hints, and the "
    "seed's z columns for comparison.",
    group_name="gold",
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[
        check_spec(EVERY_ANOMALY_EXPLAINED, GOLD_ANOMALIES_HOURLY_BRAND.name),
    ],
)
def gold_anomalies_hourly_brand(context: AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    days = partition_days(context)
    history = history_days(days)
    gold = lake.read(session, GOLD_FUNNEL_HOURLY_BRAND, history)
    silver = lake.read(session, SILVER_EVENTS, history)
    with timer.phase("detect_and_write"):
        lake.replace_partitions(
            anomaly_rows(gold, silver, days, source="batch"), GOLD_ANOMALIES_HOURLY_BRAND, days
        )
    with timer.phase("checks"):
        stored = lake.read(session, GOLD_ANOMALIES_HOURLY_BRAND, days).cache()
        by_day_type = stored.groupBy("window_date", "anomaly_type").count().collect()
        incidents = incident_list(stored)
        checks = [explained(stored)]
        stored.unpersist()
    context.log.info(f"anomaly phases (s): {timer.phases}")
    figures = {day: {ROW_COUNT: 0, "rows_out": 0, "drops": 0, "spikes": 0} for day in days}
    for row in by_day_type:
        day = figures[row["window_date"]]
        day[ROW_COUNT] += row["count"]
        day["rows_out"] += row["count"]
        day[f"{row['anomaly_type']}s"] = row["count"]
    report_partitions(context, GOLD_ANOMALIES_HOURLY_BRAND.name, figures)
    yield MaterializeResult(
        metadata={
            "run_days": len(days),
            "run_history_days_read": len(history),
            "path": MetadataValue.path(lake.table_uri(GOLD_ANOMALIES_HOURLY_BRAND)),
            "run_seconds": MetadataValue.float(timer.total),
            "run_seconds_by_phase": MetadataValue.json(timer.phases),
            **incidents,
        }
    )
    yield from checks
