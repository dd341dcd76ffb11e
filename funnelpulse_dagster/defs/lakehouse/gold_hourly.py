"""gold_funnel_hourly_brand: the funnel per UTC hour × brand, built from silver."""

from funnelpulse_dagster.lib.partitions import gold_day_figures
from funnelpulse_dagster.lib.quality import (
    gold_day_summary,
    rates_valid,
    rows_by_day,
    silver_daily_totals,
    totals_match,
)
from funnelpulse_dagster.lib.spark_tables import Built, TableRun, daily_spark_table
from funnelpulse_dagster.rules import RATES_VALID, TOTALS_MATCH_SILVER
from funnelpulse_dagster.runtime.spark_session import side_by_side
from funnelpulse_dagster.tables import GOLD_FUNNEL_HOURLY_BRAND, SILVER_EVENTS
from funnelpulse_dagster.transforms.gold import hourly_brand_funnel


@daily_spark_table(
    GOLD_FUNNEL_HOURLY_BRAND,
    deps=[SILVER_EVENTS.name],
    description="Funnel per UTC hour × brand: views, carts, removes, purchases, revenue and rates. "
    "Events without a brand form the NULL-brand group, so totals reconcile with silver.",
    group="gold",
    checks=[TOTALS_MATCH_SILVER, RATES_VALID],
    input_table=SILVER_EVENTS,
)
def gold_funnel_hourly_brand(run: TableRun) -> Built:
    silver = run.read(SILVER_EVENTS)
    # silver's totals for the reconciliation are counted while the table is written
    with run.phase("transform_and_write"):
        _, silver_totals = side_by_side(
            lambda: run.write(hourly_brand_funnel(silver)), lambda: silver_daily_totals(silver)
        )
    with run.phase("checks"):
        summary = gold_day_summary(run.stored(), GOLD_FUNNEL_HOURLY_BRAND.partition_column)
        checks = [
            totals_match(summary, silver_totals, GOLD_FUNNEL_HOURLY_BRAND.name),
            rates_valid(summary),
        ]
    return Built(gold_day_figures(rows_by_day(summary, run.days), summary), checks)
