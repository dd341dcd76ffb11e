"""The alerts sensor against a real local HTTP receiver: the first delivery (Slack and generic
forms), no duplicate after a restart (a new sensor context from the stored cursor), a retry with
back-off after the receiver was down, the persisting failure shown in the tick, a stalled stream
alerting once, routing by severity and brand, and each incident's resolution (or withdrawal) sent
where its opening went."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from funnelpulse_dagster.alerts.incidents import AlertState, parse_routes
from funnelpulse_dagster.defs.alerts.sensors import alerts_sensor
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.resources import AlertsResource, StreamingResource
from funnelpulse_dagster.resources.lake import LakeResource
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    PROVISIONAL_SOURCE,
    STREAM_SOURCE,
)
from funnelpulse_dagster_tests.live import LocalBroker, anomaly_row, hourly_row
from funnelpulse_dagster_tests.live import kafka as kafka_for
from funnelpulse_evaluation.webhook import Receiver

# a real broker; Spark only writes the tables the sensor reads with DuckDB: the same in both passes
# (in the Connect pass, which is the shorter without them: the two passes run side by side)
pytestmark = [pytest.mark.slow, pytest.mark.spark_mode_independent, pytest.mark.connect_pass]


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def anomaly_lake(spark, tmp_path):
    """A lake and `write(rows, table)`, which replaces the rows' days of `table` (the anomalies by
    default) with them."""
    lake = Lake(str(tmp_path / "tables"))

    def write(rows: list[dict], table=GOLD_ANOMALIES_HOURLY_BRAND) -> None:
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
    # its size against expected as a signed percentage (2 purchases vs 7.2), severity and hint
    assert texts[0] == (
        "Conversion drop for acme from 2019-10-02 10:00 UTC: purchases −72 % (2 vs 7.2 expected), high. "
        "Likely cause: price_band=<10: 1 purchases vs 6.5 expected"
    )
    assert texts[1].startswith(
        "Conversion spike for zeta from 2019-10-02 15:00 UTC: purchases +150 % (18 vs 7.2"
    )
    assert all(b["blocks"] for b in receiver.bodies)
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
        "Conversion drop for acme from 2019-10-02 21:00"
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
    assert (body["kind"], body["status"], body["brand"], body["severity"]) == ("drop", "open", "acme", "high")
    assert (body["first_hour"], body["last_hour"]) == ("2019-10-02T10:00:00Z", "2019-10-02T10:00:00Z")
    assert (body["change"], body["change_pct"], body["purchases"], body["expected_purchases"]) == (
        "−72 %",
        -72.2,
        2,
        7.2,
    )
    assert body["key"] == "drop:acme:2019-10-02T10:00:00" and body["top_hint"].startswith("price_band=<10")
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
    assert "nowhere to send alerts" in alerts_sensor(context).skip_message


def said(receiver: Receiver) -> list[tuple[str, str]]:
    """(the route's last path segment, the message's title) of every post, sorted."""
    return sorted(
        (path.rsplit("/", 1)[1], body.get("title") or body["text"]) for path, body in receiver.posts
    )


def test_incidents_are_routed_by_severity_and_brand_and_resolved_where_they_opened(
    anomaly_lake, receiver, bootstrap, tmp_path
):
    lake, write = anomaly_lake
    kafka = kafka_for(bootstrap, f"routes-{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic()
    routes = [
        {"name": "oncall", "webhook": receiver.url + "/oncall", "min_severity": "high"},
        {"name": "acme-team", "webhook": receiver.url + "/acme", "format": "generic", "brands": ["acme"]},
    ]
    alerts = AlertsResource(webhook_url=receiver.url + "/all", format="generic", routes=json.dumps(routes))
    day = datetime(2019, 10, 2)
    flags = [
        # one incident of acme: hours 10 and 11 (severities medium then high; its severity is high)
        anomaly_row("acme", day.replace(hour=10), "drop", "medium", 7.0),
        anomaly_row("acme", day.replace(hour=11), "drop", "high", 9.5),
        anomaly_row("zeta", day.replace(hour=15), "spike", "low", 5.1),  # low, not acme: the default
        anomaly_row("beta", day.replace(hour=12), "drop", "high", 9.1),  # high: on call only
    ]
    write(flags)
    # the hour after acme's incident is ordinary; one more is needed to call it resolved
    write([hourly_row("acme", day.replace(hour=h)) for h in (9, 10, 11, 12)], GOLD_FUNNEL_HOURLY_BRAND)

    first = _tick(alerts, lake, kafka, tmp_path / "cp")
    hint = "Likely cause: price_band=<10: 1 purchases vs 6.5 expected"
    beta_opened = f"Conversion drop for beta from 2019-10-02 12:00 UTC: purchases −72 % (2 vs 7.2 expected), high. {hint}"
    acme_opened = f"Conversion drop for acme from 2019-10-02 10:00 UTC: purchases −72 % (4 vs 14.4 expected), high. {hint}"
    assert said(receiver) == [
        ("acme", acme_opened),
        ("all", f"Conversion spike for zeta from 2019-10-02 15:00 UTC: purchases +150 % (18 vs 7.2 expected), low. {hint}"),
        ("oncall", acme_opened),
        ("oncall", beta_opened),
    ]  # fmt: skip
    [acme] = [body for path, body in receiver.posts if path.endswith("/acme")]
    assert (acme["status"], acme["severity"], acme["flagged_hours"], acme["change_pct"]) == (
        "open",
        "high",
        2,
        -72.2,
    )
    assert (acme["first_hour"], acme["last_hour"]) == ("2019-10-02T10:00:00Z", "2019-10-02T11:00:00Z")
    assert all(body["blocks"] for path, body in receiver.posts if path.endswith("/oncall"))  # Slack's form

    # the live table shows a second ordinary hour of acme: resolved, where its opening went;
    # beta's day is judged again without its flag: withdrawn, where its opening went
    write([hourly_row("acme", day.replace(hour=13))], GOLD_STREAM_FUNNEL_HOURLY_BRAND)
    write([f for f in flags if f["brand"] != "beta"])
    receiver.posts.clear()
    second = _tick(alerts, lake, kafka, tmp_path / "cp", first.cursor)
    resolved = (
        "Resolved: conversion drop for acme, 2019-10-02 10:00–12:00 UTC (2 flagged hours): purchases −72 % "
        "(4 vs 14.4 expected), high; back to normal for 2 hours"
    )
    withdrawn = "Withdrawn: conversion drop for beta from 2019-10-02 12:00 UTC is no longer flagged (its day was judged again)"
    assert said(receiver) == [
        ("acme", resolved),
        ("oncall", resolved),
        ("oncall", withdrawn),
    ]  # fmt: skip
    assert [body["status"] for path, body in receiver.posts if path.endswith("/acme")] == ["resolved"]
    # zeta has no hour after its flag: still open. Nothing is sent twice, and a tick later nothing new
    state = AlertState.load(second.cursor)
    assert {k: t["state"] for k, t in state.incidents.items()} == {
        "drop:acme:2019-10-02T10:00:00": "resolved",
        "drop:beta:2019-10-02T12:00:00": "withdrawn",
        "spike:zeta:2019-10-02T15:00:00": "open",
    }
    receiver.posts.clear()
    third = _tick(alerts, lake, kafka, tmp_path / "cp", second.cursor)
    assert receiver.posts == []
    # beta's day judged once more, flagged again: a new incident, opened where it routes
    write(flags)
    _tick(alerts, lake, kafka, tmp_path / "cp", third.cursor)
    assert said(receiver) == [("oncall", beta_opened)]


def test_a_provisional_alert_that_its_closed_verdict_does_not_keep_is_withdrawn(
    anomaly_lake, receiver, bootstrap, tmp_path
):
    """The live judge flags an hour provisionally when it ends (streaming/live_judge.py); the alert
    goes out then. An hour flagged twice (final and provisional) is one flagged hour, and a
    provisional flag its closed verdict does not keep is withdrawn, never dropped silently."""
    lake, write = anomaly_lake
    kafka = kafka_for(bootstrap, f"provisional-{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic()
    alerts = AlertsResource(webhook_url=receiver.url + "/all", format="generic")
    hour = datetime(2019, 10, 2, 10)
    acme_final = {**anomaly_row("acme", hour, "drop", "high", 9.5), "source": STREAM_SOURCE}
    acme_provisional = {**anomaly_row("acme", hour, "drop", "high", 9.5), "source": PROVISIONAL_SOURCE}
    zeta = {**anomaly_row("zeta", hour.replace(hour=12), "drop", "medium", 6.0), "source": PROVISIONAL_SOURCE}
    write([acme_final, acme_provisional, zeta])
    first = _tick(alerts, lake, kafka, tmp_path / "cp")
    opened = {body["brand"]: body for _, body in receiver.posts}
    assert {b: (o["status"], o["flagged_hours"], o["source"]) for b, o in opened.items()} == {
        "acme": ("open", 1, STREAM_SOURCE),
        "zeta": ("open", 1, PROVISIONAL_SOURCE),
    }
    # zeta's hour closed and its final verdict does not flag it
    write([acme_final])
    receiver.posts.clear()
    _tick(alerts, lake, kafka, tmp_path / "cp", first.cursor)
    assert said(receiver) == [
        ("all", "Withdrawn: conversion drop for zeta from 2019-10-02 12:00 UTC is no longer flagged (its day was judged again)")
    ]  # fmt: skip


def test_routes_are_checked_when_read():
    good = parse_routes(
        '[{"name": "oncall", "webhook": "http://h/x", "min_severity": "medium"}]', "http://h/d"
    )
    assert [(r.name, r.min_severity) for r in good] == [("oncall", "medium"), ("default", "low")]
    for text, says in [
        ('[{"name": "a", "webhook": "http://h", "min_severity": "urgent"}]', "min_severity must be one of"),
        ('[{"name": "a", "webhook": "http://h", "brand": ["x"]}]', "unknown field(s) ['brand']"),
        ('[{"name": "a", "webhook": "http://h", "kinds": ["outage"]}]', "kinds must be among"),
        ('[{"name": "default", "webhook": "http://h"}]', "names must be unique and not 'default'"),
        ('[{"name": "a"}]', "webhook"),
    ]:
        with pytest.raises((ValueError, TypeError), match=re.escape(says)):
            parse_routes(text)
