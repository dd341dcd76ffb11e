"""Gold funnel tables built from silver."""

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from funnelpulse_dagster.lib.partitions import (
    daily_partitions,
    gold_day_figures,
    partition_days,
    report_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import (
    check_spec,
    gold_day_summary,
    rates_valid,
    rows_by_day,
    silver_daily_totals,
    totals_match,
)
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import RATES_VALID, TOTALS_MATCH_SILVER
from funnelpulse_dagster.tables import GOLD_FUNNEL_HOURLY_BRAND, SILVER_EVENTS
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.gold import hourly_brand_funnel


@asset(
    name=GOLD_FUNNEL_HOURLY_BRAND.name,
    deps=[SILVER_EVENTS.name],
    description="Funnel per UTC hour × brand: views, carts, removes, purchases, revenue and rates. "
    "Events without a brand form the NULL-brand group, so totals reconcile with silver.",
    group_name="gold",
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[
        check_spec(TOTALS_MATCH_SILVER, GOLD_FUNNEL_HOURLY_BRAND.name),
        check_spec(RATES_VALID, GOLD_FUNNEL_HOURLY_BRAND.name),
    ],
)
def gold_funnel_hourly_brand(context: AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    days = partition_days(context)
    silver = lake.read(session, SILVER_EVENTS, days)
    with timer.phase("transform_and_write"):
        lake.replace_partitions(hourly_brand_funnel(silver), GOLD_FUNNEL_HOURLY_BRAND, days)
    with timer.phase("checks"):
        gold = lake.read(session, GOLD_FUNNEL_HOURLY_BRAND, days)
        summary = gold_day_summary(gold, GOLD_FUNNEL_HOURLY_BRAND.partition_column)
        silver_totals = silver_daily_totals(silver)
        stored = rows_by_day(summary, days)
        validity = rates_valid(summary)
    context.log.info(f"gold phases (s): {timer.phases}")
    report_partitions(context, GOLD_FUNNEL_HOURLY_BRAND.name, gold_day_figures(stored, summary))
    yield MaterializeResult(
        metadata={
            "run_days": len(days),
            "path": MetadataValue.path(lake.table_uri(GOLD_FUNNEL_HOURLY_BRAND)),
            "run_seconds": MetadataValue.float(timer.total),
            "run_seconds_by_phase": MetadataValue.json(timer.phases),
        }
    )
    yield totals_match(summary, silver_totals, GOLD_FUNNEL_HOURLY_BRAND.name)
    yield validity
