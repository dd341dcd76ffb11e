"""silver_events: clean, normalised, de-duplicated events."""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from funnelpulse_dagster.checks.quality import (
    SILVER_KNOWN_EVENT_TYPES,
    SILVER_NO_NULL_REQUIRED,
    SILVER_POSITIVE_PRICE,
    SILVER_UNIQUE_KEY,
    silver_quality,
    silver_violation_counts,
)
from funnelpulse_dagster.partitions import (
    daily_partitions,
    partition_days,
    single_run_backfill,
)
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.tables import BRONZE_EVENTS, SILVER_EVENTS
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.silver import (
    SILVER_RULE_NAMES,
    silver_rule_counts,
    to_silver,
)

_CHECKS = {
    SILVER_NO_NULL_REQUIRED: "No NULL event_time, event_type, price or event_date.",
    SILVER_POSITIVE_PRICE: "Every price is strictly positive.",
    SILVER_KNOWN_EVENT_TYPES: "event_type is one of view, cart, remove_from_cart, purchase.",
    SILVER_UNIQUE_KEY: "One row per (event_time, user_id, user_session, product_id, event_type).",
}


@asset(
    name=SILVER_EVENTS.name,
    deps=[BRONZE_EVENTS.name],
    description="Clean events: silver rules applied, brand/category normalised, price band, "
    "data-quality flags, de-duplicated on the event key.",
    group_name="silver",
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[
        AssetCheckSpec(name, asset=SILVER_EVENTS.name, blocking=True, description=text)
        for name, text in _CHECKS.items()
    ],
)
def silver_events(context: AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    days = partition_days(context)
    bronze = lake.read(session, BRONZE_EVENTS, days)

    # a separate aggregate is cheaper than observe() here (measured: 1.7 s against 5.7 s a month)
    with timer.phase("rule_counts"):
        rule_counts = {r["rule"]: r["count"] for r in silver_rule_counts(bronze).collect()}
    with timer.phase("transform_and_write"):
        lake.replace_partitions(to_silver(bronze), SILVER_EVENTS, days)

    with timer.phase("read_back_counts"):
        stored = lake.partition_counts(session, SILVER_EVENTS, days)
    rows_in = sum(rule_counts.values())
    rule_counts = {name: rule_counts.get(name, 0) for name in (*SILVER_RULE_NAMES, "passed")}
    rows_out = sum(stored.values())
    removed = {name: rule_counts[name] for name in SILVER_RULE_NAMES}
    removed["duplicate_event_key"] = rule_counts["passed"] - rows_out
    with timer.phase("checks"):
        stored_silver = lake.read(session, SILVER_EVENTS, days)
        check_results = silver_quality(silver_violation_counts(stored_silver), stored_silver)
    elapsed = timer.total
    context.log.info(f"silver phases (s): {timer.phases}")
    context.log.info(f"silver: {rows_in} bronze rows -> {rows_out} silver rows; removed {removed}")
    yield MaterializeResult(
        metadata={
            "rows_in": rows_in,
            "rows_out": rows_out,
            "rows_removed_by_rule": MetadataValue.json(removed),
            "days": len(days),
            "path": MetadataValue.path(lake.table_uri(SILVER_EVENTS)),
            "seconds": MetadataValue.float(elapsed),
            "seconds_by_phase": MetadataValue.json(timer.phases),
        }
    )
    yield from check_results
