"""The alerts sensor against a real local HTTP receiver: the first delivery (Slack and generic
forms), no duplicate after a restart (a new sensor context from the stored cursor), a retry with
back-off after the receiver was down, the persisting failure shown in the tick, and a stalled
stream alerting once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from funnelpulse_dagster.alerts.incidents import AlertState
from funnelpulse_dagster.defs.alerts.sensors import alerts_sensor
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.resources import AlertsResource, StreamingResource
from funnelpulse_dagster.resources.lake import LakeResource
from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND
from funnelpulse_dagster_tests.live import LocalBroker, anomaly_row, free_port
from funnelpulse_dagster_tests.live import kafka as kafka_for

pytestmark = pytest.mark.slow  # a real broker and streaming runs


class Receiver:
    """A webhook on 127.0.0.1: records every JSON body; answers 503 while `down`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.down:
                    self.send_response(503)
                else:
                    receiver.bodies.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/funnel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def anomaly_lake(spark, tmp_path):
    lake = Lake(str(tmp_path / "tables"))
    table = GOLD_ANOMALIES_HOURLY_BRAND

    def write(rows: list[dict]) -> None:
        frame = spark.createDataFrame(
            [tuple(r[f] for f in table.schema.fieldNames()) for r in rows], table.schema
        )
        lake.replace_partitions(frame, table, sorted({r["window_date"] for r in rows}))

    return lake, write


def _tick(alerts, lake, kafka, checkpoints, cursor=None):
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={
            "alerts": alerts,
            "lake": LakeResource(root=lake.root),
            "kafka": kafka,
            "streaming": StreamingResource(checkpoint_root=str(checkpoints)),
        },
    )
    result = alerts_sensor(context)
    assert isinstance(result, SensorResult)
    return result


def test_each_incident_is_sent_once_and_retried_until_it_goes_through(
    anomaly_lake, receiver, bootstrap, tmp_path
):
    lake, write = anomaly_lake
    kafka = kafka_for(bootstrap, f"alerts-{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic()
    # a back-off far longer than a tick, so the tick after a failure is early however slow the
    # machine; the test moves the retry's due time instead of waiting for it
    alerts = AlertsResource(webhook_url=receiver.url, format="slack", retry_seconds=60)
    write([
        anomaly_row("acme", datetime(2019, 10, 2, 10), "drop", "high", 9.5),
        anomaly_row("zeta", datetime(2019, 10, 2, 15), "spike", "low", 5.1),
    ])  # fmt: skip

    first = _tick(alerts, lake, kafka, tmp_path / "cp")
    assert len(receiver.bodies) == 2
    texts = sorted(b["text"] for b in receiver.bodies)
    assert texts[0].startswith("Conversion drop for acme at 2019-10-02 10:00 UTC")
    assert "spike for zeta" in texts[1] and all(b["blocks"] for b in receiver.bodies)
    assert "sent 2 alert(s)" in first.skip_reason.skip_message

    # a restart: a new context from the stored cursor sends nothing again
    again = _tick(alerts, lake, kafka, tmp_path / "cp", first.cursor)
    assert len(receiver.bodies) == 2 and "no new incident" in again.skip_reason.skip_message

    # a new incident while the receiver is down: the tick says so and keeps it pending
    write([
        anomaly_row("acme", datetime(2019, 10, 2, 10), "drop", "high", 9.5),
        anomaly_row("zeta", datetime(2019, 10, 2, 15), "spike", "low", 5.1),
        anomaly_row("acme", datetime(2019, 10, 2, 21), "drop", "medium", 6.0),
    ])  # fmt: skip
    receiver.down = True
    failing = _tick(alerts, lake, kafka, tmp_path / "cp", again.cursor)
    assert "ALERT DELIVERY FAILING for 1 incident" in failing.skip_reason.skip_message
    assert "503" in failing.skip_reason.skip_message
    pending = AlertState.load(failing.cursor).pending
    assert [p["attempts"] for p in pending.values()] == [1]
    # the first back-off
    assert all(0 < p["next_at"] - time.time() <= alerts.retry_seconds for p in pending.values())
    # before the back-off has passed nothing is tried; still reported as failing
    receiver.down = False
    early = _tick(alerts, lake, kafka, tmp_path / "cp", failing.cursor)
    assert len(receiver.bodies) == 2 and "FAILING" in early.skip_reason.skip_message
    # the back-off has passed
    state = AlertState.load(early.cursor)
    for entry in state.pending.values():
        entry["next_at"] -= alerts.retry_seconds + 1
    retried = _tick(alerts, lake, kafka, tmp_path / "cp", state.dump())
    assert len(receiver.bodies) == 3 and receiver.bodies[-1]["text"].startswith(
        "Conversion drop for acme at 2019-10-02 21:00"
    )
    assert AlertState.load(retried.cursor).pending == {}
    # and never again
    _tick(alerts, lake, kafka, tmp_path / "cp", retried.cursor)
    assert len(receiver.bodies) == 3


def test_generic_form_and_a_stalled_stream(anomaly_lake, receiver, bootstrap, tmp_path):
    lake, write = anomaly_lake
    kafka = kafka_for(bootstrap, f"stall-{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic()
    producer = kafka.producer()
    for i in range(5):
        producer.produce(kafka.topic, value=b"{}", key=str(i).encode())
    assert producer.flush(10) == 0
    write([anomaly_row("acme", datetime(2019, 10, 2, 10), "drop", "high", 9.5)])
    alerts = AlertsResource(webhook_url=receiver.url, format="generic", stream_gap_minutes=30)
    first = _tick(alerts, lake, kafka, tmp_path / "cp")
    [body] = receiver.bodies
    assert (
        body["kind"] == "drop" and body["brand"] == "acme" and body["window_start"] == "2019-10-02T10:00:00Z"
    )
    assert body["key"] == "drop:acme:2019-10-02T10:00:00"
    # no closed hour has moved for 31 minutes while 5 messages wait: one stall incident
    state = AlertState.load(first.cursor)
    state.closed_changed_at -= 31 * 60
    stalled = _tick(alerts, lake, kafka, tmp_path / "cp", state.dump())
    assert [b["kind"] for b in receiver.bodies] == ["drop", "stream_gap"]
    assert receiver.bodies[-1]["backlog"] == 5
    _tick(alerts, lake, kafka, tmp_path / "cp", stalled.cursor)
    assert len(receiver.bodies) == 2  # the same stall is not sent twice


def test_without_a_webhook_the_sensor_says_why(tmp_path):
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(),
        resources={
            "alerts": AlertsResource(webhook_url=""),
            "lake": LakeResource(root=str(tmp_path)),
            "kafka": kafka_for(LocalBroker("127.0.0.1:1", "kafka"), "none"),
            "streaming": StreamingResource(checkpoint_root=str(tmp_path)),
        },
    )
    assert "FUNNELPULSE_ALERT_WEBHOOK is not set" in alerts_sensor(context).skip_message
