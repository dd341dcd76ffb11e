"""Alerts that reach people: every new incident, once, to a webhook.

Incidents are conversion anomalies (drops and spikes, from batch or the live judge) and a stalled
stream (no new closed hour for longer than a set time while the topic holds unprocessed messages).
Each has a key; the delivery state (`AlertState`, the sensor's cursor) remembers which keys were
sent and which are waiting for a retry, so an incident is never sent twice (not even after a
restart) and never lost (a failed post is retried with exponential back-off until it goes
through). Payloads come in two forms: Slack's incoming-webhook JSON (`text` plus `blocks`) and a
generic JSON object with the incident's fields.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND, GOLD_STREAM_FUNNEL_HOURLY_BRAND

# the served tables the incident queries below read (a store for them copies no other)
ALERT_TABLES = (GOLD_ANOMALIES_HOURLY_BRAND, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
FORMATS = ("slack", "generic")
# stalls remembered (their keys name the hour the stream was stuck on, which never comes back)
REMEMBERED_STALLS = 50


@dataclass(frozen=True)
class Incident:
    key: str
    kind: str  # drop | spike | stream_gap
    title: str
    details: dict[str, Any]


class DeliveryError(RuntimeError):
    """The webhook did not take the alert (connection refused, timeout, a non-2xx answer)."""


def anomaly_incidents(con, lookback_days: int) -> tuple[list[Incident], str | None]:
    """Every anomaly of the newest `lookback_days` days of the anomaly table (DuckDB over the lake,
    serving/store.py; the days are the data's, so replayed history alerts too), one incident per
    brand-hour and type: the batch and the live judge flag the same incident. Also the horizon:
    the first hour read, before which nothing will be read again."""
    newest = con.execute("SELECT max(window_date) FROM gold_anomalies_hourly_brand").fetchone()[0]
    if newest is None:
        return [], None
    since = newest - timedelta(days=lookback_days - 1)
    rows = con.execute(
        "SELECT brand, window_start, anomaly_type, severity, score, views, conversion_rate, "
        "expected_conversion_rate, session_conversion_rate, expected_session_conversion_rate, top_hint, source "
        "FROM gold_anomalies_hourly_brand WHERE window_date >= ? ORDER BY window_start, brand",
        [since],
    ).fetchall()
    incidents = {}
    for brand, start, kind, severity, score, views, rate, expected, s_rate, s_expected, hint, source in rows:
        hour = start.strftime("%Y-%m-%d %H:00 UTC")
        key = f"{kind}:{brand}:{start.isoformat()}"
        word = "drop" if kind == "drop" else "spike"
        incidents[key] = Incident(
            key=key,
            kind=kind,
            title=(
                f"Conversion {word} for {brand} at {hour}: sessions converting "
                f"{(s_rate or 0):.1%} against {(s_expected or 0):.1%} expected "
                f"({severity}, score {score:.1f})"
            ),
            details={
                "brand": brand,
                "window_start": start.isoformat() + "Z",
                "severity": severity,
                "score": round(float(score), 2),
                "views": int(views),
                "conversion_rate": rate,
                "expected_conversion_rate": expected,
                "session_conversion_rate": s_rate,
                "expected_session_conversion_rate": s_expected,
                "top_hint": hint,
                "source": source,
            },
        )
    return list(incidents.values()), since.isoformat()


def newest_closed_hour_end(con) -> datetime | None:
    return con.execute("SELECT max(window_end) FROM gold_stream_funnel_hourly_brand").fetchone()[0]


@dataclass
class AlertState:
    """What the sensor's cursor holds."""

    sent: dict[str, str] = field(default_factory=dict)  # key -> the incident's hour (what prunes it)
    pending: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # key -> incident, attempts, next_at, error
    closed_end: str | None = None  # the newest closed hour's end, as last seen
    closed_changed_at: float | None = None  # when that last changed (or was first seen)

    @classmethod
    def load(cls, cursor: str | None) -> AlertState:
        return cls(**json.loads(cursor)) if cursor else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def stream_gap(
    state: AlertState, closed_end: datetime | None, backlog: int | None, now: float, gap_minutes: float
) -> Incident | None:
    """Track the newest closed hour; an incident when it has not moved for `gap_minutes` while
    the topic holds messages the stream has not processed. One incident per stall: its key is the
    closed hour the stream is stuck on."""
    seen = closed_end.isoformat() if closed_end else None
    if state.closed_changed_at is None or seen != state.closed_end:
        state.closed_end, state.closed_changed_at = seen, now
        return None
    stalled = now - state.closed_changed_at
    if not backlog or stalled < gap_minutes * 60:
        return None
    since = datetime.fromtimestamp(state.closed_changed_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Incident(
        key=f"stream_gap:{seen}",
        kind="stream_gap",
        title=(
            f"Live funnel stalled: no new closed hour since {since} ({stalled / 60:.0f} min) while "
            f"{backlog:,} messages wait on the topic"
        ),
        details={
            "last_closed_hour_end": (seen + "Z") if seen else None,
            "backlog": backlog,
            "stalled_minutes": round(stalled / 60),
        },
    )


def payload(incident: Incident, form: str) -> dict[str, Any]:
    if form not in FORMATS:
        raise ValueError(f"alert format must be one of {FORMATS}, got {form!r}")
    if form == "generic":
        return {"key": incident.key, "kind": incident.kind, "title": incident.title, **incident.details}
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
        for name, value in incident.details.items()
        if value is not None
        and name in ("brand", "window_start", "severity", "top_hint", "backlog", "stalled_minutes")
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f":rotating_light: {incident.title}"}}
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    return {"text": incident.title, "blocks": blocks}


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if not 200 <= response.status < 300:
                raise DeliveryError(f"{url} answered {response.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{url} answered {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{url}: {exc}") from exc


@dataclass
class Outcome:
    delivered: list[str] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)  # key -> last error, for keys still pending
    waiting: int = 0  # pending keys whose next attempt is not due yet


def deliver_new(
    state: AlertState,
    incidents: list[Incident],
    now: float,
    send: Callable[[Incident], None],
    retry_seconds: float,
    horizon: str | None = None,
    max_retry_seconds: float = 3600.0,
) -> Outcome:
    """Send every incident not sent before, and every pending one whose retry is due. A failure
    keeps the incident pending with its next attempt after an exponential back-off."""
    outcome = Outcome()
    for incident in incidents:
        if incident.key not in state.sent and incident.key not in state.pending:
            state.pending[incident.key] = {
                "incident": asdict(incident),
                "attempts": 0,
                "next_at": now,
                "error": None,
            }
    for key in sorted(state.pending):
        entry = state.pending[key]
        if entry["next_at"] > now:
            outcome.waiting += 1
            if entry["error"]:
                outcome.failing[key] = entry["error"]
            continue
        try:
            send(Incident(**entry["incident"]))
        except DeliveryError as exc:
            entry["attempts"] += 1
            entry["error"] = str(exc)
            entry["next_at"] = now + min(max_retry_seconds, retry_seconds * 2 ** (entry["attempts"] - 1))
            outcome.failing[key] = str(exc)
            continue
        incident = state.pending.pop(key)["incident"]
        state.sent[key] = (
            incident["details"].get("window_start") or incident["details"].get("last_closed_hour_end") or ""
        )
        outcome.delivered.append(key)
    # forget what can never be read again: anomalies before the horizon (the look-back only moves
    # forward), all but the newest stalls
    stalls = sorted((v, k) for k, v in state.sent.items() if k.startswith("stream_gap:"))[-REMEMBERED_STALLS:]
    anomalies = {k: v for k, v in state.sent.items() if not k.startswith("stream_gap:")}
    if horizon is not None:
        anomalies = {k: v for k, v in anomalies.items() if v >= horizon}
    state.sent = anomalies | {k: v for v, k in stalls}
    return outcome
