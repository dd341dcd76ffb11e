"""silver_events: clean, normalised, de-duplicated events."""

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from funnelpulse_dagster.lib.partitions import (
    ROW_COUNT,
    daily_partitions,
    partition_days,
    report_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import (
    check_spec,
    rows_by_day,
    silver_quality,
    silver_stored_summary,
    silver_violation_counts,
)
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import SILVER_KEY_RULE, SILVER_ROW_RULES, SILVER_RULE_NAMES
from funnelpulse_dagster.tables import BRONZE_EVENTS, SILVER_EVENTS
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.silver import silver_rule_counts, to_silver


@asset(
    name=SILVER_EVENTS.name,
    deps=[BRONZE_EVENTS.name],
    description="Clean events: silver rules applied, brand/category normalised, price band, "
    "data-quality flags, de-duplicated on the event key.",
    group_name="silver",
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[check_spec(rule, SILVER_EVENTS.name) for rule in (*SILVER_ROW_RULES, SILVER_KEY_RULE)],
)
def silver_events(context: AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    days = partition_days(context)
    bronze = lake.read(session, BRONZE_EVENTS, days)

    # a separate aggregate is cheaper than observe() here (the phase `rule_counts` in
    # `benchmarks/batch.py`)
    with timer.phase("rule_counts"):
        rule_rows = silver_rule_counts(bronze).collect()
    with timer.phase("transform_and_write"):
        lake.replace_partitions(to_silver(bronze), SILVER_EVENTS, days)

    # one job gives the stored rows per day and the rule violations the checks report
    with timer.phase("read_back_counts"):
        stored_silver = lake.read(session, SILVER_EVENTS, days)
        summary = silver_stored_summary(stored_silver)
        stored = rows_by_day(summary, days)
    by_day = {day: dict.fromkeys((*SILVER_RULE_NAMES, "passed"), 0) for day in days}
    for row in rule_rows:
        by_day[row["event_date"]][row["rule"]] = row["count"]
    figures = {}
    for day, counts in by_day.items():
        removed = {name: counts[name] for name in SILVER_RULE_NAMES}
        removed[SILVER_KEY_RULE.name] = counts["passed"] - stored[day]
        figures[day] = {
            ROW_COUNT: stored[day],
            "rows_in": sum(counts.values()),
            "rows_out": stored[day],
            "rows_removed_by_rule": MetadataValue.json(removed),
        }
    with timer.phase("checks"):
        check_results = silver_quality(silver_violation_counts(stored_silver, summary), stored_silver)
    context.log.info(f"silver phases (s): {timer.phases}")
    context.log.info(
        f"silver: {sum(f['rows_in'] for f in figures.values())} bronze rows -> "
        f"{sum(stored.values())} silver rows over {len(days)} day(s)"
    )
    report_partitions(context, SILVER_EVENTS.name, figures)
    yield MaterializeResult(
        metadata={
            "run_days": len(days),
            "path": MetadataValue.path(lake.table_uri(SILVER_EVENTS)),
            "run_seconds": MetadataValue.float(timer.total),
            "run_seconds_by_phase": MetadataValue.json(timer.phases),
        }
    )
    yield from check_results
