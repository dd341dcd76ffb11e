"""Alerts that reach people: each incident opened once and resolved once, to the webhooks its
severity and brand are routed to.

Incidents are conversion anomalies and a stalled stream (no new closed hour for longer than a set
time while the topic holds unprocessed messages).

- **An anomaly incident** is a run of flagged hours of one brand and type (drops or spikes) in
  `gold_anomalies_hourly_brand`, from batch runs or the live judge, hours at most
  `MERGE_GAP_HOURS` apart. It opens with its first flags: severity (its strongest hour's), brand,
  size (purchases against expected over its hours, as a signed percentage) and the strongest
  hour's root-cause hint. It grows while later hours are flagged, and is **resolved** once the
  brand has had `resolve_after_hours` hours with views after its last flag and none of them
  flagged; the resolution says what the whole incident was. When a re-judged day no
  longer flags any of its hours, it is **withdrawn**, saying so: a verdict never changes silently.
- **Routes** (`Route`) send each incident to every route whose severity, brands and kinds it
  matches, or to the default webhook when none does; its resolution goes where its opening went.

The delivery state (`AlertState`, the sensor's cursor) remembers the incidents being tracked, the
messages sent and those waiting for a retry, so a message is never sent twice (not even after a
restart) and never lost (a failed post is retried with exponential back-off until it goes
through). Payloads come in two forms: Slack's incoming-webhook JSON (`text` plus `blocks`) and a
generic JSON object with the incident's fields.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from funnelpulse_dagster.rules import SEVERITIES, signed_percent
from funnelpulse_dagster.tables import (
    ANOMALY_SOURCES,
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
)

# the served tables the incident queries below read (a store for them copies no other)
ALERT_TABLES = (GOLD_ANOMALIES_HOURLY_BRAND, GOLD_FUNNEL_HOURLY_BRAND, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
FORMATS = ("slack", "generic")
KINDS = ("drop", "spike", "stream_gap")
# flags of one brand and type at most this many unflagged hours apart are one incident: a run of
# evidence can leave one hour of a long drop below the gate
MERGE_GAP_HOURS = 1
# stalls remembered (their keys name the hour the stream was stuck on, which never comes back)
REMEMBERED_STALLS = 50
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Incident:
    """One message about an incident: its opening, its resolution or its withdrawal (`status`)."""

    key: str
    kind: str  # drop | spike | stream_gap
    title: str
    details: dict[str, Any]
    status: str = "open"  # open | resolved | withdrawn

    @property
    def message_key(self) -> str:
        return f"{self.key}#{self.status}"


class DeliveryError(RuntimeError):
    """The webhook did not take the alert (connection refused, timeout, a non-2xx answer)."""


# -- routing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """Where the incidents of some severities, brands and kinds go. Empty `brands` or `kinds`:
    every brand, every kind (a stall has no brand: a route naming brands never gets one)."""

    name: str
    webhook: str
    format: str = "slack"
    min_severity: str = SEVERITIES[0]
    brands: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.webhook:
            raise ValueError(f"alert route {self!r}: needs a name and a webhook")
        if self.format not in FORMATS:
            raise ValueError(
                f"alert route {self.name!r}: format must be one of {FORMATS}, got {self.format!r}"
            )
        if self.min_severity not in SEVERITIES:
            raise ValueError(
                f"alert route {self.name!r}: min_severity must be one of {SEVERITIES}, got {self.min_severity!r}"
            )
        if unknown := set(self.kinds) - set(KINDS):
            raise ValueError(f"alert route {self.name!r}: kinds must be among {KINDS}, got {sorted(unknown)}")

    def takes(self, incident: Incident) -> bool:
        severity = incident.details.get("severity") or SEVERITIES[-1]
        brand = incident.details.get("brand")
        return (
            SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)
            and (not self.brands or brand in self.brands)
            and (not self.kinds or incident.kind in self.kinds)
        )


DEFAULT_ROUTE = "default"


def parse_routes(text: str, default_webhook: str = "", default_format: str = "slack") -> list[Route]:
    """The routes of FUNNELPULSE_ALERT_ROUTES (a JSON list of objects with Route's fields), then the
    default webhook as the route named `default`, which takes what no other route takes."""
    routes = []
    for entry in json.loads(text) if text.strip() else []:
        if not isinstance(entry, dict):
            raise TypeError(f"alert routes: each route is a JSON object, got {entry!r}")
        unknown = set(entry) - set(Route.__dataclass_fields__)
        if unknown:
            raise ValueError(f"alert route {entry.get('name')!r}: unknown field(s) {sorted(unknown)}")
        routes.append(Route(**{k: tuple(v) if k in ("brands", "kinds") else v for k, v in entry.items()}))
    names = [r.name for r in routes]
    if len(set(names)) < len(names) or DEFAULT_ROUTE in names:
        raise ValueError(f"alert routes: names must be unique and not {DEFAULT_ROUTE!r}, got {names}")
    if default_webhook:
        routes.append(Route(DEFAULT_ROUTE, default_webhook, default_format))
    return routes


def routes_for(incident: Incident, routes: Iterable[Route]) -> list[str]:
    """The names of the routes that take `incident`: every matching route, else the default."""
    routes = list(routes)
    chosen = [r.name for r in routes if r.name != DEFAULT_ROUTE and r.takes(incident)]
    return chosen or [r.name for r in routes if r.name == DEFAULT_ROUTE]


# -- anomaly incidents -------------------------------------------------------------------------
@dataclass
class FlagRun:
    """Consecutive flags (at most MERGE_GAP_HOURS apart) of one brand and type."""

    brand: str
    kind: str
    hours: list[datetime]
    severity: str
    purchases: float
    expected_purchases: float
    strongest: float  # the strongest hour's score
    top_hint: str | None
    sources: set[str]

    def add(self, start, severity, score, purchases, expected, hint, source) -> None:
        self.hours.append(start)
        self.purchases += purchases or 0
        self.expected_purchases += expected or 0
        if SEVERITIES.index(severity) > SEVERITIES.index(self.severity):
            self.severity = severity
        if abs(score) > self.strongest:
            self.strongest, self.top_hint = abs(score), hint
        self.sources.add(source)


def flag_runs(con, lookback_days: int) -> tuple[list[FlagRun], str | None]:
    """Every anomaly of the newest `lookback_days` days of the anomaly table (DuckDB over the lake,
    serving/store.py; the days are the data's, so replayed history alerts too) grouped into runs
    per brand and type. Also the horizon: the first day read, before which nothing is read again."""
    newest = con.execute("SELECT max(window_date) FROM gold_anomalies_hourly_brand").fetchone()[0]
    if newest is None:
        return [], None
    since = newest - timedelta(days=lookback_days - 1)
    # an hour judged more than once (batch and the live judge, a provisional verdict beside the
    # final one) counts once, as its most final verdict says
    rows = con.execute(
        "SELECT brand, anomaly_type, window_start, severity, score, purchases, expected_purchases, top_hint, source "
        "FROM gold_anomalies_hourly_brand WHERE window_date >= ? AND brand IS NOT NULL "
        "QUALIFY row_number() OVER (PARTITION BY brand, anomaly_type, window_start "
        "ORDER BY list_position(?, source)) = 1 "
        "ORDER BY brand, anomaly_type, window_start",
        [since, list(ANOMALY_SOURCES)],
    ).fetchall()
    runs: list[FlagRun] = []
    for brand, kind, start, severity, score, purchases, expected, hint, source in rows:
        last = runs[-1] if runs else None
        if (
            last is None
            or (last.brand, last.kind) != (brand, kind)
            or start - last.hours[-1] > (MERGE_GAP_HOURS + 1) * HOUR
        ):
            last = FlagRun(brand, kind, [], severity, 0.0, 0.0, -1.0, None, set())
            runs.append(last)
        last.add(start, severity, score, purchases, expected, hint, source)
    return runs, since.isoformat()


def active_hours(con, brands: Iterable[str], after: datetime) -> dict[str, list[datetime]]:
    """The hours after `after` in which each of `brands` had views, batch and live."""
    brands = sorted(set(brands))
    if not brands:
        return {}
    rows = con.execute(
        "SELECT DISTINCT brand, window_start FROM ("
        " SELECT brand, window_start, views FROM gold_funnel_hourly_brand"
        " UNION ALL SELECT brand, window_start, views FROM gold_stream_funnel_hourly_brand"
        ") WHERE views > 0 AND window_start > ? AND list_contains(?, brand) ORDER BY brand, window_start",
        [after, brands],
    ).fetchall()
    hours: dict[str, list[datetime]] = {}
    for brand, start in rows:
        hours.setdefault(brand, []).append(start)
    return hours


def _hour(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _anomaly_message(tracked: dict[str, Any], status: str) -> Incident:
    """The message about a tracked incident (its fields: `track_anomalies`)."""
    first, last = _hour(tracked["first_hour"]), _hour(tracked["last_hour"])
    span = f"{first:%Y-%m-%d %H:00}–{last + HOUR:%H:00} UTC"
    word = tracked["kind"]  # drop | spike
    size = signed_percent(tracked["change"]) if tracked["change"] is not None else "n/a"
    counts = f"{tracked['purchases']:.0f} vs {tracked['expected_purchases']:.1f} expected"
    hours = f"{tracked['hours']} flagged hour{'s' if tracked['hours'] != 1 else ''}"
    if status == "open":
        title = (
            f"Conversion {word} for {tracked['brand']} from {first:%Y-%m-%d %H:00} UTC: purchases {size} "
            f"({counts}), {tracked['severity']}. Likely cause: {tracked['top_hint'] or 'no hint'}"
        )
    elif status == "resolved":
        title = (
            f"Resolved: conversion {word} for {tracked['brand']}, {span} ({hours}): purchases {size} "
            f"({counts}), {tracked['severity']}; back to normal for {tracked['normal_hours']} hours"
        )
    else:
        title = (
            f"Withdrawn: conversion {word} for {tracked['brand']} from {first:%Y-%m-%d %H:00} UTC is no "
            "longer flagged (its day was judged again)"
        )
    details = {
        "brand": tracked["brand"],
        "status": status,
        "severity": tracked["severity"],
        "change": size,
        "change_pct": None if tracked["change"] is None else round(100 * tracked["change"], 1),
        "first_hour": tracked["first_hour"] + "Z",
        "last_hour": tracked["last_hour"] + "Z",
        "flagged_hours": tracked["hours"],
        "purchases": tracked["purchases"],
        "expected_purchases": round(tracked["expected_purchases"], 2),
        "top_hint": tracked["top_hint"],
        "source": tracked["source"],
    }
    return Incident(tracked["key"], tracked["kind"], title, details, status)


def _summary(run: FlagRun) -> dict[str, Any]:
    expected = run.expected_purchases
    return {
        "brand": run.brand,
        "kind": run.kind,
        "first_hour": min(run.hours).isoformat(),
        "last_hour": max(run.hours).isoformat(),
        "hours": len(run.hours),
        "severity": run.severity,
        "purchases": run.purchases,
        "expected_purchases": expected,
        "change": (run.purchases - expected) / expected if expected > 0 else None,
        "top_hint": run.top_hint,
        "source": "+".join(sorted(run.sources)),
    }


def track_anomalies(
    state: AlertState,
    runs: list[FlagRun],
    horizon: str | None,
    normal_after: Callable[[str, datetime], list[datetime]],
    resolve_after_hours: int,
) -> list[Incident]:
    """Move the tracked anomaly incidents on with this tick's runs; the messages that brings: an
    opening for each new run, a resolution for each incident whose brand has had
    `resolve_after_hours` unflagged hours with views since its last flag, a withdrawal for each
    whose hours are read but no longer flagged. `normal_after(brand, hour)` gives the brand's
    hours with views after `hour`."""
    messages: list[Incident] = []
    matched: set[str] = set()
    for run in runs:
        summary = _summary(run)
        first, last = _hour(summary["first_hour"]), _hour(summary["last_hour"])
        reach = (MERGE_GAP_HOURS + 1) * HOUR
        # a withdrawn incident's hours flagged again are a new incident
        touching = [
            key
            for key, t in state.incidents.items()
            if (t["brand"], t["kind"]) == (run.brand, run.kind)
            and t["state"] != "withdrawn"
            and first <= _hour(t["last_hour"]) + reach
            and last >= _hour(t["first_hour"]) - reach
        ]
        if open_keys := [k for k in touching if state.incidents[k]["state"] == "open"]:
            key = open_keys[0]
            state.incidents[key].update({**summary, "key": key, "state": "open"})
            matched.add(key)
            continue
        # hours of a resolved incident's run are not a new incident; flags after it are one (its
        # size is the whole run's)
        if touching:
            resolved_until = max(_hour(state.incidents[k]["last_hour"]) for k in touching)
            later = [h for h in run.hours if h > resolved_until]
            matched.update(touching)
            if not later:
                continue
            summary |= {"first_hour": min(later).isoformat(), "hours": len(later)}
        key = base = f"{run.kind}:{run.brand}:{summary['first_hour']}"
        again = 1
        while key in state.incidents:  # a withdrawn incident's key: its messages were sent
            again += 1
            key = f"{base}~{again}"
        tracked = {**summary, "key": key, "state": "open", "normal_hours": 0}
        state.incidents[key] = tracked
        matched.add(key)
        messages.append(_anomaly_message(tracked, "open"))
    for key, tracked in list(state.incidents.items()):
        if tracked["state"] != "open":
            continue
        if key not in matched and horizon is not None and tracked["first_hour"] >= horizon:
            tracked["state"] = "withdrawn"
            messages.append(_anomaly_message(tracked, "withdrawn"))
            continue
        normal = normal_after(tracked["brand"], _hour(tracked["last_hour"]))
        tracked["normal_hours"] = len(normal)
        if len(normal) >= resolve_after_hours:
            tracked["state"] = "resolved"
            messages.append(_anomaly_message(tracked, "resolved"))
    # forget what can never be read again: incidents whose hours all lie before the horizon
    if horizon is not None:
        state.incidents = {k: t for k, t in state.incidents.items() if t["last_hour"] >= horizon}
    return messages


def anomaly_messages(
    con, state: AlertState, lookback_days: int, resolve_after_hours: int
) -> tuple[list[Incident], str | None]:
    """This tick's anomaly messages from the lake behind `con`, and the horizon."""
    runs, horizon = flag_runs(con, lookback_days)
    flagged: dict[str, set[datetime]] = {}
    for run in runs:
        flagged.setdefault(run.brand, set()).update(run.hours)

    def normal_after(brand: str, hour: datetime) -> list[datetime]:
        # an hour flagged either way is not normal
        hours = active_hours(con, [brand], hour).get(brand, [])
        return [h for h in hours if h not in flagged.get(brand, set())]

    return track_anomalies(state, runs, horizon, normal_after, resolve_after_hours), horizon


def newest_closed_hour_end(con) -> datetime | None:
    return con.execute("SELECT max(window_end) FROM gold_stream_funnel_hourly_brand").fetchone()[0]


@dataclass
class AlertState:
    """What the sensor's cursor holds."""

    # message delivery key ("<route>><incident key>#<status>") -> the incident's newest hour (what prunes it)
    sent: dict[str, str] = field(default_factory=dict)
    # delivery key -> route, message, attempts, next_at, error
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    # anomaly incident key -> what is known of it (track_anomalies), `state` open | resolved | withdrawn
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed_end: str | None = None  # the newest closed hour's end, as last seen
    closed_changed_at: float | None = None  # when that last changed (or was first seen)

    @classmethod
    def load(cls, cursor: str | None) -> AlertState:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in json.loads(cursor).items() if k in known}) if cursor else cls()

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
            "severity": SEVERITIES[-1],
            "last_closed_hour_end": (seen + "Z") if seen else None,
            "backlog": backlog,
            "stalled_minutes": round(stalled / 60),
        },
    )


SLACK_FIELDS = (
    "brand",
    "severity",
    "change",
    "first_hour",
    "last_hour",
    "top_hint",
    "backlog",
    "stalled_minutes",
)
SLACK_ICONS = {
    "open": ":rotating_light:",
    "resolved": ":white_check_mark:",
    "withdrawn": ":information_source:",
}


def payload(incident: Incident, form: str) -> dict[str, Any]:
    if form not in FORMATS:
        raise ValueError(f"alert format must be one of {FORMATS}, got {form!r}")
    if form == "generic":
        return {
            "key": incident.key,
            "kind": incident.kind,
            "status": incident.status,
            "title": incident.title,
            **incident.details,
        }
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
        for name, value in incident.details.items()
        if value is not None and name in SLACK_FIELDS
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{SLACK_ICONS[incident.status]} {incident.title}"},
        }
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


def sender(routes: Iterable[Route], post: Callable[[str, dict[str, Any]], None] = post_json):
    """`send(route name, message)` posting the message in the route's form to its webhook."""
    by_name = {r.name: r for r in routes}

    def send(route: str, incident: Incident) -> None:
        target = by_name.get(route)
        if target is None:  # a route removed from the configuration while a message waited for it
            raise DeliveryError(f"alert route {route!r} is no longer configured")
        post(target.webhook, payload(incident, target.format))

    return send


@dataclass
class Outcome:
    delivered: list[str] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)  # key -> last error, for keys still pending
    waiting: int = 0  # pending keys whose next attempt is not due yet


def _newest_hour(incident: Incident) -> str:
    details = incident.details
    return details.get("last_hour") or details.get("last_closed_hour_end") or ""


def deliver_new(
    state: AlertState,
    incidents: list[Incident],
    now: float,
    send: Callable[[str, Incident], None],
    routes: Iterable[Route],
    retry_seconds: float,
    horizon: str | None = None,
    max_retry_seconds: float = 3600.0,
) -> Outcome:
    """Send each message not sent before to each of its routes, and every pending one whose retry
    is due. A resolution or withdrawal goes to the routes its incident's opening went to. A
    failure keeps the message pending with its next attempt after an exponential back-off."""
    outcome = Outcome()
    routes = list(routes)
    for incident in incidents:
        if incident.status == "open":
            targets = routes_for(incident, routes)
            if incident.key in state.incidents:
                state.incidents[incident.key]["routes"] = targets
        else:
            tracked = state.incidents.get(incident.key, {})
            targets = tracked.get("routes") or routes_for(incident, routes)
        for route in targets:
            key = f"{route}>{incident.message_key}"
            if key not in state.sent and key not in state.pending:
                state.pending[key] = {
                    "route": route,
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
            send(entry["route"], Incident(**entry["incident"]))
        except DeliveryError as exc:
            entry["attempts"] += 1
            entry["error"] = str(exc)
            entry["next_at"] = now + min(max_retry_seconds, retry_seconds * 2 ** (entry["attempts"] - 1))
            outcome.failing[key] = str(exc)
            continue
        state.sent[key] = _newest_hour(Incident(**state.pending.pop(key)["incident"]))
        outcome.delivered.append(key)
    # forget what can never be read again: anomalies before the horizon (the look-back only moves
    # forward), all but the newest stalls
    stalls = sorted((v, k) for k, v in state.sent.items() if "stream_gap:" in k)[-REMEMBERED_STALLS:]
    anomalies = {k: v for k, v in state.sent.items() if "stream_gap:" not in k}
    if horizon is not None:
        anomalies = {k: v for k, v in anomalies.items() if v >= horizon}
    state.sent = anomalies | {k: v for v, k in stalls}
    return outcome
