"""The sensor on the Kafka topic's offsets that drives the streaming job and observes the topic."""

from __future__ import annotations

import json

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from funnelpulse_dagster.defs.streaming.jobs import live_funnel_job
from funnelpulse_dagster.defs.streaming.live_funnel import topic_observation
from funnelpulse_dagster.resources import KafkaResource, StreamingResource
from funnelpulse_dagster.streaming.offsets import KafkaUnavailable, backlog

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
