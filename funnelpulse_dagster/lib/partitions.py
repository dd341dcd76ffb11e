"""Daily UTC partitions shared by every table, and helpers to read a run's days."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from dagster import AssetExecutionContext, BackfillPolicy, DailyPartitionsDefinition, MetadataValue

from funnelpulse_dagster.settings import load_settings


def _daily_partitions() -> DailyPartitionsDefinition:
    settings = load_settings()
    if settings.end_date is not None:
        # bounded to the data (the demo): the UI shows those days, not years of empty ones
        return DailyPartitionsDefinition(
            start_date=settings.start_date.isoformat(),
            end_date=(settings.end_date + timedelta(days=1)).isoformat(),  # exclusive
            timezone="UTC",
        )
    # today's partition exists too, so a live day can be built while it fills up
    return DailyPartitionsDefinition(start_date=settings.start_date.isoformat(), timezone="UTC", end_offset=1)


daily_partitions = _daily_partitions()

# A range backfill runs as one run and one Spark job per asset, not one run per day.
single_run_backfill = BackfillPolicy.single_run()


def days_in_window(start: datetime, end: datetime) -> list[date]:
    """Days of a half-open [start, end) partition time window."""
    first, last = start.date(), end.date()
    return [first + timedelta(days=i) for i in range((last - first).days)]


def partition_days(context: AssetExecutionContext) -> list[date]:
    """The days a run materializes: one partition or a whole range (context.partition_key
    fails on a range, the time window works for both)."""
    window = context.partition_time_window
    return days_in_window(window.start, window.end)


def day_range(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


ROW_COUNT = "dagster/row_count"


def partition_range_tags(first: date | str, last: date | str) -> dict[str, str]:
    """The tags that make one run cover a range of daily partitions (single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": str(first),
        "dagster/asset_partition_range_end": str(last),
    }


def report_partitions(
    context: AssetExecutionContext, asset_name: str, figures_by_day: Mapping[date, Mapping[str, Any]]
) -> None:
    """Give each materialized partition its own day's figures. A range run's MaterializeResult
    applies to every partition of the range, so only run-level facts (named `run_*`) go there;
    these per-day values override it partition by partition."""
    for day, figures in figures_by_day.items():
        context.add_asset_metadata(dict(figures), asset_key=asset_name, partition_key=day.isoformat())


def gold_day_figures(
    rows_by_day: Mapping[date, int], totals_by_day: Mapping[date, Mapping] | None = None
) -> dict:
    """A gold table's per-partition figures: its rows, and its purchases and revenue when known."""
    figures = {}
    for day, rows in rows_by_day.items():
        figures[day] = {ROW_COUNT: rows, "rows_out": rows}
        if totals_by_day is not None:
            totals = totals_by_day.get(day, {})
            figures[day]["purchases"] = int(totals.get("purchases", 0))
            figures[day]["revenue"] = MetadataValue.float(float(totals.get("revenue", 0)))
    return figures
