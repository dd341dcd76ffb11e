"""Keeping the batch lakehouse fresh: a daily schedule, and a sensor on the landing folder that
builds exactly the days new or changed exports own."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from funnelpulse_dagster.defs.lakehouse.jobs import batch_lakehouse_job
from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.ownership import (
    STANDARD_LAYOUT,
    ExportFormatError,
    layout_of,
    own_days_in,
    owned_days,
)
from funnelpulse_dagster.lib.partitions import partition_range_tags
from funnelpulse_dagster.resources import RawDataResource
from funnelpulse_dagster.resources.raw_data import LandedExport
from funnelpulse_dagster.settings import load_settings


@schedule(
    job=batch_lakehouse_job,
    cron_schedule="15 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 01:15 UTC, build yesterday's partition of the whole batch chain.",
)
def daily_lakehouse_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
    end = load_settings().end_date
    if end is not None and yesterday > end:
        return SkipReason(f"{yesterday} is after the last partition day {end} (FUNNELPULSE_END_DATE)")
    return RunRequest(run_key=f"daily:{yesterday.isoformat()}", partition_key=yesterday.isoformat())


def days_owned_by(uri: str) -> set[date]:
    """The days a file's lines belong to, by the ownership rule bronze applies
    (funnelpulse_dagster.lakehouse.ownership). A file bronze will refuse still gets the days its lines
    start with, so the runs that fail and name it are the runs for its days."""
    try:
        layout = layout_of(uri, lakefs.read_head(uri))
    except ExportFormatError:
        layout = STANDARD_LAYOUT
    own, undated = own_days_in(lakefs.open_text_chunks(uri), layout)
    return owned_days(uri, own, undated)


def contiguous_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """[d1, d2, d3, d5] → [(d1, d3), (d5, d5)]."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def runs_for_new_files(
    exports: Iterable[LandedExport], seen: dict[str, str], first_day: date, last_day: date, log=None
) -> tuple[list[RunRequest], dict[str, str]]:
    """Run requests for the days of files that are new or changed since `seen`.

    A file's run key is its name and fingerprint, so the same file content is never processed
    twice, even if the cursor is lost; a changed file (new content) is processed again.
    A file with lines but no date at all cannot be given to any day: it is logged, and every
    bronze run fails naming it until it is fixed or removed.
    """
    requests: list[RunRequest] = []
    now_seen = dict(seen)
    for entry in exports:
        if seen.get(entry.name) == entry.fingerprint:
            continue
        try:
            owned = days_owned_by(entry.uri)
        except ExportFormatError as exc:
            if log:
                log(str(exc))
            owned = set()
        days = {d for d in owned if first_day <= d <= last_day}
        for start, end in contiguous_ranges(days):
            requests.append(
                RunRequest(
                    run_key=f"{entry.name}:{entry.fingerprint}:{start}...{end}",
                    tags={**partition_range_tags(start, end), "funnelpulse/source_file": entry.name},
                )
            )
        now_seen[entry.name] = entry.fingerprint
    return requests, now_seen


@sensor(
    job=batch_lakehouse_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description="Watches the landing folder or bucket (FUNNELPULSE_RAW: a path or gs://bucket/prefix) "
    "for new or changed exports (*.csv, *.csv.gz) and builds exactly the days their lines belong to.",
)
def raw_files_sensor(context: SensorEvaluationContext, raw_data: RawDataResource):
    settings = load_settings()
    raw = raw_data.uri
    if lakefs.is_local(raw) and not lakefs.exists(raw):
        return SkipReason(f"{raw} does not exist yet")
    seen = json.loads(context.cursor) if context.cursor else {}
    # partitions run from the configured start to the configured end, else to today
    last_day = settings.end_date or datetime.now(UTC).date()
    requests, now_seen = runs_for_new_files(
        raw_data.exports(), seen, settings.start_date, last_day, log=context.log.warning
    )
    if not requests and now_seen == seen:
        return SkipReason(f"no new or changed export in {raw}")
    return SensorResult(run_requests=requests, cursor=json.dumps(now_seen, sort_keys=True))
