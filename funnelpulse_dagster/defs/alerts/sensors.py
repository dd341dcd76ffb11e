"""The alerts sensor: each incident's opening and resolution to its routes, once, retried until it
goes through."""

from __future__ import annotations

import time

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from funnelpulse_dagster.alerts.incidents import (
    ALERT_TABLES,
    AlertState,
    anomaly_messages,
    deliver_new,
    newest_closed_hour_end,
    sender,
    stream_gap,
)
from funnelpulse_dagster.resources import KafkaResource, LakeResource, StreamingResource
from funnelpulse_dagster.resources.alerts import AlertsResource
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.streaming.offsets import KafkaUnavailable, backlog


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Sends each incident (a conversion drop or spike of a brand, a stalled live stream) "
    "once when it opens and once when it is resolved, to the routes of FUNNELPULSE_ALERT_ROUTES its "
    "severity and brand match, else to FUNNELPULSE_ALERT_WEBHOOK; failed posts are retried with "
    "back-off, and a delivery that keeps failing shows in this sensor's ticks.",
)
def alerts_sensor(
    context: SensorEvaluationContext,
    alerts: AlertsResource,
    lake: LakeResource,
    kafka: KafkaResource,
    streaming: StreamingResource,
):
    routes = alerts.parsed_routes()
    if not routes:
        return SkipReason(
            "neither FUNNELPULSE_ALERT_WEBHOOK nor FUNNELPULSE_ALERT_ROUTES is set: nowhere to send alerts"
        )
    state = AlertState.load(context.cursor)
    now = time.time()
    store = LakeStore(lake.root, mode="parquet", tables=ALERT_TABLES)
    try:
        store.refresh()
        con = store.cursor()
        incidents, horizon = anomaly_messages(con, state, alerts.lookback_days, alerts.resolve_after_hours)
        closed_end = newest_closed_hour_end(con)
    finally:
        store.close()
    try:
        ends = kafka.end_offsets_now(timeout=5)
        waiting = backlog(ends, streaming.committed_offsets(kafka.topic))
    except KafkaUnavailable:
        waiting = None  # no broker: a stall cannot be told from an idle shop
    if gap := stream_gap(state, closed_end, waiting, now, alerts.stream_gap_minutes):
        incidents.append(gap)
    outcome = deliver_new(
        state,
        incidents,
        now,
        sender(routes),
        routes,
        alerts.retry_seconds,
        horizon,
    )
    for key in outcome.delivered:
        context.log.info(f"alert sent: {key}")
    if outcome.failing:
        first = next(iter(outcome.failing.items()))
        context.log.error(
            f"alert delivery failing for {len(outcome.failing)} incident(s), e.g. {first[0]}: {first[1]}"
        )
        reason = (
            f"ALERT DELIVERY FAILING for {len(outcome.failing)} incident(s) (retrying with back-off): "
            f"{first[1]}; sent this tick: {len(outcome.delivered)}"
        )
    elif outcome.delivered:
        reason = f"sent {len(outcome.delivered)} alert(s): {', '.join(outcome.delivered[:5])}"
    else:
        reason = f"no new incident ({len(state.sent)} sent before)"
    return SensorResult(skip_reason=SkipReason(reason), cursor=state.dump())
