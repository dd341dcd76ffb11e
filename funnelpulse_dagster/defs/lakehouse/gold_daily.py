"""The daily and price-band gold tables, built in one step from silver."""

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
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
    daily_matches_hourly,
    for_asset,
    gold_day_summary,
    rates_valid,
    rows_by_day,
    silver_daily_totals,
    totals_match,
)
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import DAILY_MATCHES_HOURLY, RATES_VALID, TOTALS_MATCH_SILVER
from funnelpulse_dagster.tables import (
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    SILVER_EVENTS,
    Table,
)
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.gold import (
    GOLD_INPUT_COLUMNS,
    daily_brand_funnel,
    daily_category_funnel,
    hourly_price_band_funnel,
)

_BUILDERS = {
    GOLD_FUNNEL_DAILY_BRAND.name: (GOLD_FUNNEL_DAILY_BRAND, daily_brand_funnel),
    GOLD_FUNNEL_DAILY_CATEGORY.name: (GOLD_FUNNEL_DAILY_CATEGORY, daily_category_funnel),
    GOLD_FUNNEL_HOURLY_PRICE_BAND.name: (GOLD_FUNNEL_HOURLY_PRICE_BAND, hourly_price_band_funnel),
}


def _spec(table: Table, description: str, extra_deps: list[str] | None = None) -> AssetSpec:
    return AssetSpec(
        table.name,
        deps=[SILVER_EVENTS.name, *(extra_deps or [])],
        description=description,
        group_name="gold",
        kinds={"spark", "parquet"},
    )


@multi_asset(
    specs=[
        _spec(
            GOLD_FUNNEL_DAILY_BRAND,
            "Funnel per UTC day × brand, with session and user funnels.",
            extra_deps=[GOLD_FUNNEL_HOURLY_BRAND.name],  # its reconciliation check reads the hourly table
        ),
        _spec(
            GOLD_FUNNEL_DAILY_CATEGORY,
            "Funnel per UTC day × category_root (NULL: no category, charts say 'unknown').",
        ),
        _spec(GOLD_FUNNEL_HOURLY_PRICE_BAND, "Funnel per UTC hour × price band (<10, 10-30, 30-60, 60+)."),
    ],
    check_specs=[
        check_spec(DAILY_MATCHES_HOURLY, GOLD_FUNNEL_DAILY_BRAND.name),
        *[check_spec(TOTALS_MATCH_SILVER, name) for name in _BUILDERS if name in TOTALS_MATCH_SILVER.tables],
        *[check_spec(RATES_VALID, name) for name in _BUILDERS],
    ],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    can_subset=True,
)
def gold_daily_tables(context: AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    timer = PhaseTimer()
    session = spark.spark_session
    days = partition_days(context)
    selected_keys = {key.to_user_string() for key in context.selected_asset_keys}
    selected = [name for name in _BUILDERS if name in selected_keys]  # this multi-asset's own, in order
    # Each table scans silver's Parquet itself: caching a month for the three of them costs more
    # than the two extra scans (`benchmarks/batch.py` times the three, phase by phase)
    silver = lake.read(session, SILVER_EVENTS, days).select(*GOLD_INPUT_COLUMNS)
    silver_totals = None
    for name in selected:
        table, build = _BUILDERS[name]
        with timer.phase(f"{name}_write"):
            lake.replace_partitions(build(silver), table, days)
        with timer.phase(f"{name}_checks"):
            stored = lake.read(session, table, days)
            summary = gold_day_summary(stored, table.partition_column)
            if table is GOLD_FUNNEL_DAILY_BRAND:
                check = daily_matches_hourly(stored, lake.read(session, GOLD_FUNNEL_HOURLY_BRAND, days))
            else:
                if silver_totals is None:
                    silver_totals = silver_daily_totals(silver)
                check = totals_match(summary, silver_totals, table.name)
            validity = rates_valid(summary)
        report_partitions(context, name, gold_day_figures(rows_by_day(summary, days)))
        yield MaterializeResult(
            asset_key=name,
            metadata={
                "run_days": len(days),
                "path": MetadataValue.path(lake.table_uri(table)),
                "run_seconds_by_phase": MetadataValue.json(
                    {k: v for k, v in timer.phases.items() if k.startswith(name)}
                ),
            },
        )
        yield for_asset(check, name)
        yield for_asset(validity, name)
    context.log.info(f"gold daily tables phases (s): {timer.phases}")
