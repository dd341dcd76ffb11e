"""Replay: bronze events → Kafka messages, in event-time order, at a chosen pace.

Spark turns a day of bronze into (key, JSON value, event time) sorted by event time; the driver
produces them with an idempotent, `acks=all` producer. Days are prepared one ahead in a
background thread, so Spark's work overlaps with producing. Pacing:
- unthrottled (the default): as fast as the producer goes;
- `events_per_second`: a steady rate, checked every few milliseconds' worth of messages;
- `speedup`: event-time pacing, e.g. 3600 plays an hour of the shop in a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.tables import RAW_COLUMNS

EXPORT_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss 'UTC'"


def to_messages(bronze: DataFrame) -> DataFrame:
    """Bronze rows → `key` (session, else user), `value` (JSON of the nine raw fields, NULLs
    kept as null), `event_us` (for event-time pacing), in event-time order.

    The replay loads one day at a time, which one task sorts without a shuffle (a global
    orderBy would first run a sampling job to range-partition a few hundred thousand rows)."""
    fields = [
        F.date_format("event_time", EXPORT_TIME_FORMAT).alias("event_time") if c == "event_time" else F.col(c)
        for c in RAW_COLUMNS
    ]
    return (
        bronze.select(
            F.coalesce(F.col("user_session"), F.col("user_id").cast("string")).alias("key"),
            F.to_json(F.struct(*fields), {"ignoreNullFields": "false"}).alias("value"),
            F.unix_micros("event_time").alias("event_us"),
        )
        .coalesce(1)
        .sortWithinPartitions("event_us")
    )


@dataclass
class Pacer:
    """Decides how long to wait before message number `sent` (0-based) of the replay."""

    events_per_second: float | None = None
    speedup: float | None = None
    started: float = field(default_factory=time.monotonic)
    first_event_us: int | None = None

    def __post_init__(self) -> None:
        if self.events_per_second is not None and self.speedup is not None:
            raise ValueError("set events_per_second or speedup, not both")
        for name in ("events_per_second", "speedup"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    @property
    def throttled(self) -> bool:
        return self.events_per_second is not None or self.speedup is not None

    def check_every(self) -> int:
        """Messages between two clock checks: about 5 ms of sending at the set rate."""
        if self.events_per_second is not None:
            return max(1, min(2_000, int(self.events_per_second / 200)))
        return 500

    def wait(self, sent: int, event_us: int) -> None:
        if self.events_per_second is not None:
            due = sent / self.events_per_second
        elif self.speedup is not None:
            if self.first_event_us is None:
                self.first_event_us = event_us
            due = (event_us - self.first_event_us) / 1e6 / self.speedup
        else:
            return
        ahead = due - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


@dataclass
class ReplayTotals:
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    per_day: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.produced / self.seconds if self.seconds else 0.0


def _prefetched(days: list[date], load: Callable[[date], object]) -> Iterator[tuple[date, object]]:
    """Yield (day, load(day)) while the next day loads in the background."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-prefetch") as pool:
        pending: Future | None = pool.submit(load, days[0]) if days else None
        for i, day in enumerate(days):
            table = pending.result()
            pending = pool.submit(load, days[i + 1]) if i + 1 < len(days) else None
            yield day, table


def replay(
    producer,
    topic: str,
    days: Iterable[date],
    load_day: Callable[[date], object],
    pacer: Pacer,
    log: Callable[[str], None] = print,
    progress_every_seconds: float = 10.0,
    flush_timeout_seconds: float = 120.0,
) -> ReplayTotals:
    """Produce every message of `days` (a pyarrow Table per day from `load_day`) to `topic`.

    Delivery is confirmed per message; the totals say how many were produced, delivered and
    failed, and the caller fails the run unless all were delivered.
    """
    totals = ReplayTotals()
    lock = threading.Lock()

    def delivered(error, _message) -> None:
        with lock:
            if error is None:
                totals.delivered += 1
            else:
                totals.failed += 1
                totals.first_error = totals.first_error or str(error)

    started = time.monotonic()
    pacer.started = started
    last_report = started
    every = pacer.check_every()
    for day, table in _prefetched(sorted(set(days)), load_day):
        keys = table.column("key").to_pylist()
        values = table.column("value").to_pylist()
        event_us = table.column("event_us").to_pylist() if pacer.throttled else None
        for i, value in enumerate(values):
            if pacer.throttled and totals.produced % every == 0:
                pacer.wait(totals.produced, event_us[i])
            while True:
                try:
                    producer.produce(topic, value=value, key=keys[i], on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.05)
            totals.produced += 1
            if totals.produced % 10_000 == 0:
                producer.poll(0)
                now = time.monotonic()
                if now - last_report >= progress_every_seconds:
                    last_report = now
                    log(
                        f"replay: {totals.produced:,} events sent ({day}), "
                        f"{totals.produced / (now - started):,.0f} events/s"
                    )
        totals.per_day[day.isoformat()] = len(values)
        producer.poll(0)
    remaining = producer.flush(flush_timeout_seconds)
    totals.seconds = time.monotonic() - started
    if remaining:
        totals.failed += remaining
        totals.first_error = (
            totals.first_error or f"{remaining} messages undelivered after {flush_timeout_seconds}s"
        )
    return totals
