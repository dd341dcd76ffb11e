"""`funnel_report`: the analyst's one-page view of the funnel, re-built after the gold tables."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from funnelpulse_dagster.lib.partitions import day_range, single_run_backfill
from funnelpulse_dagster.reports.funnel_report import (
    CHARTS,
    gather,
    pick_brand,
    render,
    report_range,
    summary_markdown,
)
from funnelpulse_dagster.resources import LakeResource, ReportsResource, SparkResource
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_TABLES,
    SILVER_EVENTS,
)
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.anomalies import history_days
from funnelpulse_dagster.transforms.report import deep_dive_hours, session_funnel

REPORT_FILE = "funnel_report.html"


class ReportConfig(Config):
    days: int = Field(default=30, ge=1, le=366, description="days covered, ending at `end`")
    end: str = Field(
        default="", description="last day (YYYY-MM-DD); default: the last day of hourly brand gold"
    )
    brand: str = Field(
        default="", description="deep-dive brand; default: the most anomalies, else top revenue"
    )


@asset(
    deps=[*[t.name for t in GOLD_TABLES], GOLD_ANOMALIES_HOURLY_BRAND.name, SILVER_EVENTS.name],
    group_name="reports",
    kinds={"plotly", "html"},
    description="One self-contained HTML report (plotly.js inlined, opens offline) under reports/: "
    "top brands, daily revenue and conversion, categories, price bands, the funnel, anomaly "
    "counts and a brand deep dive with its baseline band and root-cause hints.",
    # re-built when any gold partition lands (the automation sensor in automation.py runs it)
    automation_condition=AutomationCondition.eager(),
    # lets a CLI partition-range run that selects the report (the demo's 'not group:streaming')
    # build it once, after gold, in the same run
    backfill_policy=single_run_backfill,
)
def funnel_report(
    context: AssetExecutionContext,
    config: ReportConfig,
    spark: SparkResource,
    lake: LakeResource,
    reports: ReportsResource,
) -> MaterializeResult:
    timer = PhaseTimer()
    store = LakeStore(lake.root, mode="parquet")
    try:
        with timer.phase("read_gold"):
            store.refresh()
            con = store.cursor()
            start, end = report_range(
                con, date.fromisoformat(config.end) if config.end else None, config.days
            )
            brand = pick_brand(con, start, end, config.brand or None)
            data = gather(con, start, end, brand)
    finally:
        store.close()
    days = day_range(start, end)
    with timer.phase("spark"):
        session = spark.spark_session
        data.session_funnel = session_funnel(lake.read(session, SILVER_EVENTS, days))
        if brand:
            history = history_days(days)
            data.deep_dive_hours = deep_dive_hours(
                lake.read(session, GOLD_FUNNEL_HOURLY_BRAND, history), brand, days
            )
    with timer.phase("render"):
        document, _ = render(data)
        path = reports.write(REPORT_FILE, document)
    summary = summary_markdown(data)
    context.log.info(f"report written to {path} ({len(document) / 1e6:.1f} MB); phases (s): {timer.phases}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "open": MetadataValue.url(path.as_uri()),
            "summary": MetadataValue.md(summary),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "deep_dive_brand": brand or "",
            "charts": MetadataValue.json(list(CHARTS)),
            "size_bytes": len(document.encode()),
            "seconds": MetadataValue.float(timer.total),
            "seconds_by_phase": MetadataValue.json(timer.phases),
        }
    )
