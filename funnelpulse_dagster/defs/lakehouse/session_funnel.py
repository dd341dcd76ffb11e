"""The ordered session funnel per day × dimension (transforms/ordered_funnel.py)."""

from datetime import timedelta

from dagster import AssetDep, Config, TimeWindowPartitionMapping
from pydantic import Field
from pyspark.sql import functions as F

from funnelpulse_dagster.lib.partitions import day_range, gold_day_figures
from funnelpulse_dagster.lib.quality import (
    ordered_funnel_consistent,
    ordered_funnel_summary,
    rows_by_day,
    viewed_sessions_by_day,
)
from funnelpulse_dagster.lib.spark_tables import Built, TableRun, daily_spark_table
from funnelpulse_dagster.rules import ORDERED_FUNNEL_CONSISTENT
from funnelpulse_dagster.runtime.spark_session import side_by_side
from funnelpulse_dagster.tables import GOLD_SESSION_FUNNEL_DAILY, SILVER_EVENTS
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


@daily_spark_table(
    GOLD_SESSION_FUNNEL_DAILY,
    deps=[AssetDep(SILVER_EVENTS.name, partition_mapping=_AROUND)],
    description="The funnel as analysts read it: per day a session started × shop / brand / "
    "category root / price band: sessions that viewed, then carted after the view, then bought "
    "after the cart (event-time order), drop-off per step, step rates, time to convert (median, p90).",
    group="gold",
    checks=[ORDERED_FUNNEL_CONSISTENT],
    config=SessionFunnelConfig,
    input_table=SILVER_EVENTS,
)
def gold_session_funnel_daily(run: TableRun, config: SessionFunnelConfig) -> Built:
    around = day_range(min(run.days) - timedelta(days=1), max(run.days) + timedelta(days=1))
    silver = run.read(SILVER_EVENTS, around)
    funnel = ordered_funnel(session_steps(silver, config.conversion_window_minutes))
    # silver's recount for the check is counted while the table is written
    with run.phase("transform_and_write"):
        _, recount = side_by_side(
            lambda: run.write(funnel.filter(F.col("session_date").isin(run.days))),
            lambda: viewed_sessions_by_day(silver, run.days),
        )
    with run.phase("check"):
        summary = ordered_funnel_summary(run.stored())
        check = ordered_funnel_consistent(summary, recount, run.days)
    figures = gold_day_figures(rows_by_day(summary, run.days))
    for day in figures:
        figures[day]["conversion_window_minutes"] = config.conversion_window_minutes or 0
    return Built(figures, [check])
