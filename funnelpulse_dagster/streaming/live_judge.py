"""The live judge: the stream's hours judged by the same anomaly detector as batch, and upserted
into gold_anomalies_hourly_brand.

- **Closed hours** (`judge_closed_hours`): the hours the watermark has closed, in the live table;
  their verdicts are final for the stream, `source = stream`.
- **Ended open hours** (`judge_open_hours`): hours whose last minute the stream has passed but
  the watermark has not closed yet (it waits for late events), judged from the open state,
  `source = provisional`. They are judged again, finally, when they close: the closed verdict
  replaces the provisional one, and an alert opened on a provisional flag the final verdict does
  not keep is withdrawn (alerts/incidents.py), never dropped silently.

A later batch run of a day replaces the whole day with its own verdicts. `LiveJudge` runs both
while a continuous stream runs, and once after any run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    LIVE_OPEN_HOURLY_BRAND,
    PROVISIONAL_SOURCE,
    SILVER_EVENTS,
    STREAM_EVENTS,
    STREAM_SOURCE,
    Table,
)
from funnelpulse_dagster.transforms.anomalies import anomaly_rows, history_days, live_gold, live_silver

LIVE_SOURCES = (STREAM_SOURCE, PROVISIONAL_SOURCE)


def _live_verdicts(session, lake: Lake, stream_gold: DataFrame, days: list[date], source: str) -> DataFrame:
    """The detector's rows for `days`, judged on `stream_gold` where it has hours and batch gold
    for the look-back history before them."""
    history = history_days(days)
    gold = live_gold(stream_gold, lake.read(session, GOLD_FUNNEL_HOURLY_BRAND, history))
    stream_events = lake.read(session, STREAM_EVENTS).filter(F.to_date("event_time").isin(history))
    silver = live_silver(stream_gold, lake.read(session, SILVER_EVENTS, history), stream_events)
    return anomaly_rows(gold, silver, days, source=source)


def _upsert(session, lake: Lake, days: list[date], verdicts: DataFrame, replaced) -> None:
    """Replace the rows of `days` that `replaced` (a Column over the table) selects by `verdicts`
    (computed already: checkpointed).
    A live brand-hour keeps one verdict, the most final: a provisional row of an hour that
    `verdicts` judges finally goes, and a provisional verdict of an hour a final row holds is not
    added."""
    keys = ["brand", "window_start"]
    provisional = F.col("source") == PROVISIONAL_SOURCE
    # the files being replaced are read first: cut the lineage before overwriting them
    earlier = lake.read(session, GOLD_ANOMALIES_HOURLY_BRAND, days).filter(~replaced).localCheckpoint()
    final_earlier, final_new = earlier.filter(~provisional), verdicts.filter(~provisional)
    merged = (
        final_earlier.unionByName(final_new)
        .unionByName(earlier.filter(provisional).join(final_new.select(*keys), keys, "left_anti"))
        .unionByName(verdicts.filter(provisional).join(final_earlier.select(*keys), keys, "left_anti"))
    )
    lake.replace_partitions(merged, GOLD_ANOMALIES_HOURLY_BRAND, days)


def _days(frame: DataFrame) -> list[date]:
    return sorted(r[0] for r in frame.select("window_date").distinct().collect())


def closed_hours(session, lake: Lake) -> tuple[DataFrame, datetime | None]:
    """The live table pinned at its newest commit, and the end of its last hour (None when it is
    empty). The gold query keeps appending hours while a continuous run judges: one judgement
    reads one version, or an hour that closed meanwhile would be read twice (closed, and from
    the open state) and its evidence counted twice."""
    table = GOLD_STREAM_FUNNEL_HOURLY_BRAND
    version = lake.delta_table(table).version() if lake.is_table(table) else None
    frame = lake.read(session, table, as_of=version)
    return frame, frame.agg(F.max("window_end")).first()[0]


def _evidence_open(closed_after: datetime | None):
    """A verdict whose evidence is not all closed yet: the hour that first made it a flag
    (`detectable_at` is that hour's end) is still open. Only a provisional judgement can make
    such a verdict; the final one cannot decide it before that hour closes."""
    if closed_after is None:
        return F.lit(True)
    return F.col("detectable_at") > F.lit(closed_after)


def judge_closed_hours(
    session, lake: Lake, closed: DataFrame, closed_after: datetime | None, closed_before, log
) -> int:
    """Judge the closed hours (`closed_hours`) of the days whose hours closed after
    `closed_before` with the batch detector and upsert them, marked `source = stream`, into
    gold_anomalies_hourly_brand. The whole day is re-judged, not only the new hours: a run that
    passes the threshold in a new hour also flags the earlier hours of the day it reaches back
    over, exactly as the batch detector does. Idempotent: a re-judged hour replaces its earlier
    live verdict, and a provisional one whose evidence has closed. A provisional flag on a closed
    hour whose evidence hour is still open stays until that hour closes: the drop that made it a
    flag is seen only there. Returns the number of live anomalies in the newly closed hours."""
    if closed_after is None or (closed_before is not None and closed_after <= closed_before):
        return 0
    lo = closed_before or closed.agg(F.min("window_start")).first()[0]
    new_hours = (F.col("window_end") > F.lit(lo)) & (F.col("window_end") <= F.lit(closed_after))
    days = _days(closed.filter(new_hours))
    is_closed = F.col("window_end") <= F.lit(closed_after)
    verdicts = _live_verdicts(session, lake, closed, days, STREAM_SOURCE).filter(is_closed).localCheckpoint()
    replaced = is_closed & (
        (F.col("source") == STREAM_SOURCE)
        | ((F.col("source") == PROVISIONAL_SOURCE) & ~_evidence_open(closed_after))
    )
    _upsert(session, lake, days, verdicts, replaced)
    count = verdicts.filter(new_hours).count()
    log(
        f"judged live hours up to {closed_after} ({', '.join(map(str, days))}): {count} anomalies in new hours"
    )
    return count


def _newest_version(frame: DataFrame) -> tuple[DataFrame | None, int | None]:
    """The newest published version of an open-state table, and its number (None, None: none)."""
    version = frame.agg(F.max("version")).first()[0]
    return (None, None) if version is None else (frame.filter(F.col("version") == version), version)


def ended_open_hours(session, lake: Lake, closed_after: datetime | None) -> DataFrame:
    """The open state's hours (newest version) that have ended by its `as_of` and that the live
    table does not hold yet (they start at `closed_after` or later), in its columns."""
    newest, _ = _newest_version(lake.read(session, LIVE_OPEN_HOURLY_BRAND))
    if newest is None:
        return session.createDataFrame([], GOLD_STREAM_FUNNEL_HOURLY_BRAND.schema)
    ended = newest.filter(F.col("window_end") <= F.col("as_of"))
    if closed_after is not None:
        ended = ended.filter(F.col("window_start") >= F.lit(closed_after))
    return ended.select(*GOLD_STREAM_FUNNEL_HOURLY_BRAND.schema.fieldNames())


def judge_open_hours(
    session, lake: Lake, closed: DataFrame, closed_after: datetime | None, ended: DataFrame, log
) -> int:
    """Judge the open state's ended hours (`ended_open_hours`) provisionally: the detector over
    the live table's closed hours and these, upserted as `source = provisional` in place of the
    earlier provisional verdicts of their days. Kept: the verdicts on the ended hours, and those
    on closed hours that a run through an ended hour reaches back over (their evidence is open;
    the final judgement decides them when it closes). Returns the number of provisional
    anomalies."""
    ended = ended.localCheckpoint()
    hours = sorted(r[0] for r in ended.select("window_start").distinct().collect())
    if not hours:
        return 0
    days = _days(ended)
    # the closed hours the judgement reads and the ended ones, as one computed frame: a union of
    # the two plans nests the detector's plan deeper than a Spark Connect client can send
    in_history = F.col("window_date").isin(history_days(days))
    stream_gold = closed.filter(in_history).unionByName(ended).localCheckpoint()
    is_open = F.col("window_start") >= F.lit(hours[0])
    verdicts = (
        _live_verdicts(session, lake, stream_gold, days, PROVISIONAL_SOURCE)
        .filter(is_open | _evidence_open(closed_after))
        .localCheckpoint()
    )
    _upsert(session, lake, days, verdicts, F.col("source") == PROVISIONAL_SOURCE)
    count = verdicts.count()
    log(f"judged ended open hours {hours[0]} … {hours[-1]} provisionally: {count} anomalies")
    return count


@dataclass
class LiveJudge:
    """Judges the live hours as they end: `tick()` is called often while a stream runs (at most
    every `interval_seconds` it looks whether an hour has ended or closed since it last judged,
    and judges if so); `finish()` after the run judges whatever is left.

    A provisional verdict is made when an hour ends, not when the watermark closes it (two hours
    later), so an alert can go out that much sooner."""

    session: object
    lake: Lake
    log: Callable[[str], None]
    interval_seconds: float = 30.0
    closed_before: datetime | None = None
    anomalies_in_new_hours: int = 0  # in the hours closed while it judged
    provisional_anomalies: int = 0  # in the newest provisional judgement
    _last_check: float = field(default=0.0, repr=False)
    _judged_open_until: datetime | None = field(default=None, repr=False)

    @classmethod
    def starting_now(cls, session, lake: Lake, log, interval_seconds: float = 30.0) -> LiveJudge:
        return cls(session, lake, log, interval_seconds, closed_before=closed_hours(session, lake)[1])

    def tick(self) -> None:
        if time.monotonic() - self._last_check < self.interval_seconds:
            return
        self._judge()
        self._last_check = time.monotonic()

    def finish(self) -> None:
        self._judge()

    def _judge(self) -> None:
        session, lake = self.session, self.lake
        closed, closed_after = closed_hours(session, lake)
        self.anomalies_in_new_hours += judge_closed_hours(
            session, lake, closed, closed_after, self.closed_before, self.log
        )
        newly_closed = closed_after != self.closed_before
        self.closed_before = closed_after
        ended = ended_open_hours(session, lake, closed_after)
        ended_until = ended.agg(F.max("window_end")).first()[0]
        # judged again when an hour ended, and when one closed: the hours a provisional run
        # reaches back over keep their flags only while its evidence is open
        if ended_until is not None and (newly_closed or ended_until != self._judged_open_until):
            self.provisional_anomalies = judge_open_hours(
                session, lake, closed, closed_after, ended, self.log
            )
            self._judged_open_until = ended_until


def newest_state(session, lake: Lake, table: Table) -> tuple[int | None, int, object]:
    """(version, rows, as_of) of the newest published open state of a live table."""
    newest, version = _newest_version(lake.read(session, table))
    if newest is None:
        return None, 0, None
    rows, as_of = newest.agg(F.count(F.lit(1)), F.max("as_of")).first()
    return version, rows, as_of
