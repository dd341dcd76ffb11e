"""Keeping the lakehouse fresh without anyone pressing a button: a daily schedule, a sensor on
the input folder, a sensor on the Kafka topic's offsets that drives the streaming job, and the
automation sensor that re-builds the funnel report after gold changes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from funnelpulse_dagster import lakefs
from funnelpulse_dagster.defs.jobs import REPORT_ASSET, batch_lakehouse_job, live_funnel_job
from funnelpulse_dagster.defs.streaming.live_funnel import topic_observation
from funnelpulse_dagster.ownership import (
    STANDARD_LAYOUT,
    ExportFormatError,
    layout_of,
    own_days_in,
    owned_days,
)
from funnelpulse_dagster.resources import KafkaResource, RawDataResource, StreamingResource
from funnelpulse_dagster.resources.raw_data import LandedExport
from funnelpulse_dagster.settings import load_settings
from funnelpulse_dagster.streaming.offsets import KafkaUnavailable, backlog


def partition_range_tags(first: date, last: date) -> dict[str, str]:
    """Tags that make one run cover a range of daily partitions (single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


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
    (funnelpulse_dagster.ownership). A file bronze will refuse still gets the days its lines
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


UNFINISHED_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def stream_run_request(
    ends: dict[int, int], committed: dict[int, int] | None, topic: str
) -> RunRequest | SkipReason:
    """A run when the topic holds messages the checkpoint has not processed. The run key is the
    target offsets, so a tick that sees the same offsets again asks for nothing new."""
    behind = {p: o for p, o in (committed or {}).items() if o > ends.get(p, 0)}
    if behind:
        return SkipReason(
            f"topic {topic} ends before the checkpoint at partitions {sorted(behind)} (the topic was "
            "recreated?); delete the streaming checkpoints to start over"
        )
    new = backlog(ends, committed)
    if new == 0:
        return SkipReason(f"no new messages on {topic} (offsets {json.dumps(ends, sort_keys=True)})")
    target = json.dumps({str(p): o for p, o in sorted(ends.items())})
    return RunRequest(
        run_key=f"{topic}:{target}",
        tags={"funnelpulse/target_offsets": target, "funnelpulse/new_messages": str(new)},
    )


@sensor(
    job=live_funnel_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description="Compares the Kafka topic's end offsets with the streaming checkpoint and starts "
    "the streaming job when there is new data; one streaming run at a time. Observes the topic "
    "(end offsets, backlog) whenever its offsets move.",
)
def kafka_offsets_sensor(
    context: SensorEvaluationContext, kafka: KafkaResource, streaming: StreamingResource
):
    unfinished = context.instance.get_runs(
        filters=RunsFilter(job_name=live_funnel_job.name, statuses=UNFINISHED_RUN_STATUSES), limit=1
    )
    if unfinished:
        return SkipReason(f"streaming run {unfinished[0].run_id} is still in progress")
    try:
        ends = kafka.end_offsets_now(timeout=5)
    except KafkaUnavailable as exc:
        return SkipReason(f"Kafka is not reachable at {kafka.bootstrap_servers}: {exc}")
    committed = streaming.committed_offsets(kafka.topic)
    decision = stream_run_request(ends, committed, kafka.topic)
    # the topic is observed whenever its end offsets moved since the last tick (the cursor)
    observed = json.dumps({str(p): o for p, o in sorted(ends.items())})
    events = [] if context.cursor == observed else [topic_observation(kafka.topic, ends, committed)]
    if isinstance(decision, RunRequest):
        return SensorResult(run_requests=[decision], asset_events=events, cursor=observed)
    return SensorResult(skip_reason=decision, asset_events=events, cursor=observed)


# evaluates funnel_report's eager condition: a run of the report once any upstream gold
# partition has been materialized since the report was last built
report_automation_sensor = AutomationConditionSensorDefinition(
    "report_automation_sensor",
    target=AssetSelection.assets(REPORT_ASSET),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-materializes funnel_report after the gold tables it reads change.",
)
