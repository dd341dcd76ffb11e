"""The daily and price-band gold tables, built in one step from silver."""

from functools import partial

from dagster import AssetExecutionContext, AssetSpec, multi_asset
from pyspark.sql import DataFrame

from funnelpulse_dagster.lib.partitions import daily_partitions, gold_day_figures, single_run_backfill
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
from funnelpulse_dagster.lib.spark_tables import SPARK_TABLE_KINDS, TableRun, start_run
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import (
    DAILY_MATCHES_HOURLY,
    RATES_VALID,
    ROW_CHANGE_EXPLAINED,
    TOTALS_MATCH_SILVER,
)
from funnelpulse_dagster.runtime.spark_session import side_by_side
from funnelpulse_dagster.tables import (
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    SILVER_EVENTS,
    Table,
)
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
        kinds=SPARK_TABLE_KINDS,
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
        *[check_spec(ROW_CHANGE_EXPLAINED, name, blocking=False) for name in _BUILDERS],
    ],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    can_subset=True,
)
def gold_daily_tables(context: AssetExecutionContext, spark: SparkResource, lake: LakeResource):
    run = start_run(context, GOLD_FUNNEL_DAILY_BRAND, spark, lake)
    selected_keys = {key.to_user_string() for key in context.selected_asset_keys}
    selected = [name for name in _BUILDERS if name in selected_keys]  # this multi-asset's own, in order
    # Each table scans silver's Parquet itself: caching a month for the three of them costs more
    # than the two extra scans (`benchmarks/batch.py` times the three, phase by phase). The
    # tables are built side by side, each in a thread of its own: a day's build is mostly the
    # round trips of small Spark jobs (planning, Delta's log, a commit), which overlap, and a
    # month's big jobs share the cores either way (runtime/spark_session.side_by_side).
    silver = run.read(SILVER_EVENTS).select(*GOLD_INPUT_COLUMNS)
    reconciled = any(name in TOTALS_MATCH_SILVER.tables for name in selected)
    totals, *built = side_by_side(
        (lambda: silver_daily_totals(silver)) if reconciled else dict,
        *[partial(_build, run, name, silver) for name in selected],
    )
    for name, (table, summary, hourly_check, validity) in zip(selected, built, strict=True):
        check = (
            hourly_check if table is GOLD_FUNNEL_DAILY_BRAND else totals_match(summary, totals, table.name)
        )
        yield run.report(table, gold_day_figures(rows_by_day(summary, run.days)))
        yield for_asset(check, name)
        yield for_asset(validity, name)
        yield run.row_change_check(table, SILVER_EVENTS)
    run.log_phases()


def _build(run: TableRun, name: str, silver: DataFrame) -> tuple:
    """Write one of the tables and judge its stored rows: (table, day summary, the daily brand
    table's check against the hourly table (None for the others, reconciled with silver's
    totals), rates_valid)."""
    table, build = _BUILDERS[name]
    with run.phase(f"{name}_write"):
        run.write(build(silver), table)
    with run.phase(f"{name}_checks"):
        stored = run.stored(table)
        summary = gold_day_summary(stored, table.partition_column)
        hourly_check = None
        if table is GOLD_FUNNEL_DAILY_BRAND:
            hourly_check = daily_matches_hourly(stored, run.read(GOLD_FUNNEL_HOURLY_BRAND))
        validity = rates_valid(summary)
    return table, summary, hourly_check, validity
