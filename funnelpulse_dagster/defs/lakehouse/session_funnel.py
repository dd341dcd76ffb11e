"""The ordered session funnel per day × dimension (transforms/ordered_funnel.py)."""

from datetime import timedelta

from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field
from pyspark.sql import functions as F

from funnelpulse_dagster.lib.partitions import (
    daily_partitions,
    day_range,
    gold_day_figures,
    partition_days,
    report_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import (
    check_spec,
    ordered_funnel_consistent,
    ordered_funnel_summary,
    rows_by_day,
)
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import ORDERED_FUNNEL_CONSISTENT
from funnelpulse_dagster.tables import GOLD_SESSION_FUNNEL_DAILY, SILVER_EVENTS
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.ordered_funnel import ordered_funnel, session_steps

# a day's sessions: the day before tells which sessions started earlier, the day after holds the
# rest of the sessions that cross midnight
_AROUND = TimeWindowPartitionMapping(
    start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
)


class SessionFunnelConfig(Config):
    conversion_window_minutes: int | None = Field(
        default=None,
        description="Steps count only within this many minutes after the session's first view of "
        "the value; unset: the whole session.",
    )


@asset(
    name=GOLD_SESSION_FUNNEL_DAILY.name,
    deps=[AssetDep(SILVER_EVENTS.name, partition_mapping=_AROUND)],
    description="The funnel as analysts read it: per day a session started × shop / brand / "
    "category root / price band: sessions that viewed, then carted after the view, then bought "
    "after the cart (event-time order), drop-off per step, step rates, time to convert (median, p90).",
    group_name="gold",
    kinds={"spark", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[check_spec(ORDERED_FUNNEL_CONSISTENT, GOLD_SESSION_FUNNEL_DAILY.name)],
)
def gold_session_funnel_daily(
    context: AssetExecutionContext, config: SessionFunnelConfig, spark: SparkResource, lake: LakeResource
):
    timer = PhaseTimer()
    session = spark.spark_session
    days = partition_days(context)
    around = day_range(min(days) - timedelta(days=1), max(days) + timedelta(days=1))
    silver = lake.read(session, SILVER_EVENTS, around)
    with timer.phase("transform_and_write"):
        funnel = ordered_funnel(session_steps(silver, config.conversion_window_minutes))
        lake.replace_partitions(
            funnel.filter(F.col("session_date").isin(days)), GOLD_SESSION_FUNNEL_DAILY, days
        )
    with timer.phase("check"):
        summary = ordered_funnel_summary(lake.read(session, GOLD_SESSION_FUNNEL_DAILY, days))
        check = ordered_funnel_consistent(summary, silver, days)
    report_partitions(context, GOLD_SESSION_FUNNEL_DAILY.name, gold_day_figures(rows_by_day(summary, days)))
    yield MaterializeResult(
        metadata={
            "run_days": len(days),
            "run_conversion_window_minutes": config.conversion_window_minutes or 0,
            "path": MetadataValue.path(lake.table_uri(GOLD_SESSION_FUNNEL_DAILY)),
            "run_seconds_by_phase": MetadataValue.json(timer.phases),
        }
    )
    yield check
