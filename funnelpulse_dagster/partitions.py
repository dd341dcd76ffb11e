"""Daily UTC partitions shared by every table, and helpers to read a run's days."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from dagster import AssetExecutionContext, BackfillPolicy, DailyPartitionsDefinition

from funnelpulse_dagster.settings import load_settings

daily_partitions = DailyPartitionsDefinition(
    start_date=load_settings().start_date.isoformat(),
    timezone="UTC",
    # today's partition exists too, so a live day can be built while it fills up
    end_offset=1,
)

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
