"""The streaming job: Kafka → live tables, as three Spark queries.

1. The ingest query reads the topic once per micro-batch, parses every message (bronze's typed
   columns, a reason for what is not a valid event) and appends the batch's valid events to
   `stream_events` and its dead letters to `stream_dead_letters`, one Delta commit per table
   and batch under the query's transaction id. A batch re-run after a crash adds nothing
   Delta has committed, so the tables are exactly-once.
2. The gold query streams `stream_events` (Delta's source: whole commits) through the silver
   rules, de-duplication within the 2-hour watermark and hourly windows by brand, into
   `gold_stream_funnel_hourly_brand` with Delta's sink (exactly-once through the checkpoint
   and the table's log).
3. The open-state query reads the topic itself (it must not wait for the ingest query's
   publishing) and keeps the hours not closed yet, incrementally: a stateful aggregation in
   update mode whose micro-batches emit only the minute cells they touched
   (transforms/live.py), merged and published as one version of `live_open_hourly_brand` and
   `live_minute_funnel` (streaming/open_state.py).

`run_stream` serves the Dagster asset, the CLI and the tests alike:
- `available_now=True`: ingest what the topic holds now (fixed when the run starts), then build
  gold from it, then the open state, then stop;
- `available_now=False`: the three queries trigger every `processing_time_seconds`, until
  stopped or until `max_runtime_seconds` (for always-on deployments).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery
from pyspark.sql.types import StructType

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import DELTA, Lake
from funnelpulse_dagster.rules import SILVER_RULE_NAMES, violated_rule
from funnelpulse_dagster.streaming.offsets import uncommitted_batch
from funnelpulse_dagster.streaming.open_state import OpenStateSink
from funnelpulse_dagster.tables import (
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    RAW_COLUMNS,
    STREAM_DEAD_LETTERS,
    STREAM_EVENTS,
    STREAM_GOLD_QUERY,
    STREAM_INGEST_QUERY,
    STREAM_OPEN_QUERY,
)
from funnelpulse_dagster.transforms.live import open_contributions
from funnelpulse_dagster.transforms.silver import apply_silver_rules, normalise_events
from funnelpulse_dagster.transforms.stream import (
    DEAD_LETTER_COLUMNS,
    DEAD_LETTER_ROWS,
    REASON,
    clean_stream_events,
    collect_dead_letters,
    parse_messages,
    stream_hourly_brand_funnel,
    valid_events,
)

INPUT_METRICS = "stream_input"
CLEAN_METRICS = "stream_clean"


def _named_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """An observation's values by name. A classic session's progress JSON holds them so; a
    Spark Connect client's holds `{"values": [...], "schema": {"fields": [...]}}`."""
    if set(metrics) == {"values", "schema"}:
        return dict(zip((f["name"] for f in metrics["schema"]["fields"]), metrics["values"], strict=True))
    return metrics


@dataclass
class QueryTotals:
    """What a query did during one run, summed over its micro-batches."""

    name: str
    batches: int = 0
    input_rows: int = 0
    seconds: float = 0.0
    late_rows_dropped: int = 0
    watermark: str | None = None
    end_offsets: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, int] = field(default_factory=dict)
    batch_seconds: list[float] = field(default_factory=list)

    def add(self, progress: dict[str, Any]) -> None:
        if progress.get("numInputRows", 0) == 0 and not progress.get("stateOperators"):
            return
        self.batches += 1
        self.input_rows += int(progress.get("numInputRows", 0))
        batch_seconds = (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000
        self.seconds += batch_seconds
        self.batch_seconds.append(batch_seconds)
        for operator in progress.get("stateOperators") or []:
            self.late_rows_dropped += int(operator.get("numRowsDroppedByWatermark", 0))
        self.watermark = (progress.get("eventTime") or {}).get("watermark", self.watermark)
        for source in progress.get("sources") or []:
            if source.get("endOffset"):
                end = source["endOffset"]
                self.end_offsets = json.loads(end) if isinstance(end, str) else end
        for name, metrics in (progress.get("observedMetrics") or {}).items():
            # the queries' own observations only: under Spark Connect the per-batch observation
            # inside foreachBatch (dead-letter rows, a list) is reported in the progress too
            if name not in STREAM_OBSERVATIONS:
                continue
            for key, value in _named_metrics(metrics).items():
                self.observed[key] = self.observed.get(key, 0) + int(value or 0)

    def as_metadata(self) -> dict[str, Any]:
        ordered = sorted(self.batch_seconds)
        return {
            "micro_batches": self.batches,
            "input_rows": self.input_rows,
            "seconds": round(self.seconds, 2),
            "rows_per_second": round(self.input_rows / self.seconds) if self.seconds else 0,
            "median_batch_seconds": round(ordered[len(ordered) // 2], 2) if ordered else 0.0,
            "late_rows_dropped_by_watermark": self.late_rows_dropped,
            "watermark": self.watermark or "",
            "end_offsets": json.dumps(self.end_offsets, sort_keys=True),
            **self.observed,
        }


def read_messages(spark: SparkSession, options: dict[str, str]) -> DataFrame:
    """The topic as Spark's Kafka source gives it (tables.KAFKA_MESSAGE_SCHEMA's columns)."""
    return spark.readStream.format("kafka").options(**options).load()


RULE_METRICS = "stream_rules"
# the names of the streaming queries' own observations, whose counts the run totals add up
STREAM_OBSERVATIONS = (INPUT_METRICS, RULE_METRICS, CLEAN_METRICS)


def parsed_stream(messages: DataFrame) -> DataFrame:
    """Messages → parsed rows, observing how many there were and how many were not events."""
    return messages.transform(parse_messages).observe(
        INPUT_METRICS,
        F.count(F.lit(1)).alias("messages"),
        F.count(F.when(F.col(REASON).isNotNull(), True)).alias("dead_letters"),
    )


def gold_from_events(events: DataFrame) -> DataFrame:
    """Stream events → gold rows, observing what each silver rule and the de-duplication removed."""
    counted = events.observe(
        RULE_METRICS,
        F.count(F.lit(1)).alias("events_in"),
        *[
            F.count(F.when(violated_rule() == name, True)).alias(f"removed_{name}")
            for name in SILVER_RULE_NAMES
        ],
    )
    clean = counted.transform(clean_stream_events).observe(
        CLEAN_METRICS, F.count(F.lit(1)).alias("events_after_dedup")
    )
    return clean.transform(stream_hourly_brand_funnel)


@dataclass(frozen=True)
class LiveSettings:
    """The open state the open-state query publishes (transforms/live.py)."""

    minute_window_minutes: int = 1
    top_brands: int = 5
    keep_versions: int = 3  # older states are deleted; a reader copying one has time to finish


def checkpoint_app_id(checkpoint: str) -> str:
    """The Delta transaction id of a streaming query's writes: the query's id, which Spark keeps
    in its checkpoint (`metadata`) across restarts. A new checkpoint (a stream started afresh)
    numbers its batches from 0 again under a new id, so Delta never mistakes them for old ones."""
    return json.loads(lakefs.read_text(f"{checkpoint.rstrip('/')}/metadata").splitlines()[0])["id"]


def with_batch_columns(frame: DataFrame, table, batch_id: int) -> DataFrame:
    """A micro-batch's rows with the batch id and the table's date partition."""
    day_of = {"event_date": "event_time", "kafka_date": "kafka_timestamp"}[table.partition_column]
    return frame.withColumns(
        {"batch_id": F.lit(batch_id).cast("long"), table.partition_column: F.to_date(day_of)}
    )


def publish_micro_batch(lake: Lake, checkpoint: str) -> Callable[[DataFrame, int], None]:
    """The ingest query's sink: one pass over the micro-batch writes its valid events and
    collects its dead letters (rare; they ride back in the write's observed metrics, as bronze's
    quarantine does), so Kafka is read and parsed once.

    Each table gets one Delta commit per batch, made idempotent by the query's transaction id
    (Lake.append_batch), events first. A batch re-run after a crash between the two commits
    finds its events committed, so it writes its dead letters alone (a filter over the batch);
    Delta drops any commit that was already made.
    """

    def publish(parsed: DataFrame, batch_id: int) -> None:
        spark = parsed.sparkSession
        app_id = checkpoint_app_id(checkpoint)
        if lake.committed_batch(STREAM_EVENTS, app_id) >= batch_id:
            dead = parsed.filter(F.col(REASON).isNotNull()).select(*DEAD_LETTER_COLUMNS)
            lake.append_batch(
                with_batch_columns(dead, STREAM_DEAD_LETTERS, batch_id), STREAM_DEAD_LETTERS, app_id, batch_id
            )
            return
        observation = Observation(f"dead_letters_{batch_id}")
        observed = parsed.observe(observation, collect_dead_letters())
        events = with_batch_columns(observed.transform(valid_events), STREAM_EVENTS, batch_id)
        lake.append_batch(events, STREAM_EVENTS, app_id, batch_id)
        rows = observation.get[DEAD_LETTER_ROWS]
        if rows:
            fields = [STREAM_DEAD_LETTERS.schema[c] for c in DEAD_LETTER_COLUMNS]
            dead = spark.createDataFrame(rows, StructType(fields))
            lake.append_batch(
                with_batch_columns(dead, STREAM_DEAD_LETTERS, batch_id), STREAM_DEAD_LETTERS, app_id, batch_id
            )

    return publish


def start_ingest(
    spark: SparkSession, source_options: dict[str, str], lake: Lake, checkpoint: str, trigger: dict
) -> StreamingQuery:
    # both tables exist from the first run on, empty until a batch brings rows
    for table in (STREAM_EVENTS, STREAM_DEAD_LETTERS):
        lake.ensure_table(spark, table)
    return start_with_python_worker(
        read_messages(spark, source_options)
        .transform(parsed_stream)
        .writeStream.queryName(STREAM_INGEST_QUERY)
        .option("checkpointLocation", checkpoint)
        # a plain Lake: under Spark Connect the function runs in a Python worker of the server
        .foreachBatch(publish_micro_batch(lake, checkpoint))
        .trigger(**trigger)
    )


# Under Spark Connect a foreachBatch query's start launches the function's Python worker on the
# server, which waits a fixed 10 s for it to connect back (PythonWorkerFactory). On a loaded
# machine the worker's imports can take longer; nothing has run yet, so starting again is safe.
WORKER_CONNECT_FAILURE = "Python worker failed to connect back"
WORKER_START_ATTEMPTS = 3


def start_with_python_worker(
    writer: DataStreamWriter, attempts: int = WORKER_START_ATTEMPTS, pause_seconds: float = 2.0
) -> StreamingQuery:
    """`writer.start()`, started again (up to `attempts` in all) when only the Python worker of
    its foreachBatch function failed to connect back in time; any other failure is raised."""
    attempt = 1
    while True:
        try:
            return writer.start()
        except Exception as exc:
            if WORKER_CONNECT_FAILURE not in str(exc) or attempt >= attempts:
                raise
        time.sleep(pause_seconds * attempt)
        attempt += 1


def finish_uncommitted_batch(
    name: str, checkpoint: str, start_once: Callable[[dict], StreamingQuery], log: Callable[[str], None]
) -> None:
    """Run again, alone, the micro-batch a killed run of Kafka query `name` planned and did not
    commit; `start_once(trigger)` starts the query.

    Spark 4.1's Kafka source cannot report progress for such a batch: it re-runs the batch
    from the logged offsets without asking the broker for the latest ones, then fails in its
    metrics with a NullPointerException (SPARK-55271, in every Spark release on Maven Central
    today). The failure comes after the batch's commit is written, so one run of that batch
    alone (`once`), whatever it raises, leaves the checkpoint committed, and the run proper then
    starts with a new batch. Nothing is skipped: if the batch is still uncommitted after it, the
    error is raised."""
    batch = uncommitted_batch(checkpoint)
    if batch is None:
        return
    log(f"{name}: running batch {batch}, planned and not committed before a restart, on its own")
    query = start_once({"once": True})
    try:
        query.awaitTermination()
    except Exception as exc:  # the known progress-report failure; judged by the commit below
        if uncommitted_batch(checkpoint) == batch:
            raise RuntimeError(f"streaming query {name} failed re-running batch {batch}: {exc}") from exc
    finally:
        if query.isActive:
            query.stop()
    if uncommitted_batch(checkpoint) == batch:
        raise RuntimeError(f"batch {batch} of {checkpoint} is still not committed after running it again")


def start_open(
    spark: SparkSession,
    source_options: dict[str, str],
    lake: Lake,
    checkpoint: str,
    trigger: dict,
    live: LiveSettings,
    since: datetime | None = None,
) -> StreamingQuery:
    """The open-state query: the topic's valid events through the silver rules, as contribution
    rows (transforms/live.py), handed per micro-batch to the sink that counts the new ones and
    publishes the open state (streaming/open_state.py). Stateless in Spark: a micro-batch's
    cost follows the batch, not the open hour.

    `since`: only events at or after it count. A run that works off a backlog passes the start
    of the hours that can still be open when it ends, so it does not aggregate days that are
    closed before it finishes (their cells would be dropped unseen)."""
    events = read_messages(spark, source_options).transform(parse_messages).transform(valid_events)
    if since is not None:
        # as text, read in the session's time zone (UTC): a naive datetime would be local time
        events = events.filter(F.col("event_time") >= F.lit(since.isoformat(sep=" ")).cast("timestamp"))
    clean = events.select(*RAW_COLUMNS).transform(apply_silver_rules).transform(normalise_events)
    minutes = live.minute_window_minutes
    sink = OpenStateSink(
        lake, f"{checkpoint.rstrip('/')}_cells", minutes, live.top_brands, live.keep_versions
    )
    return start_with_python_worker(
        open_contributions(clean, minutes)
        .writeStream.queryName(STREAM_OPEN_QUERY)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(sink)
        .trigger(**trigger)
    )


def open_hours_start(gold: QueryTotals | None) -> datetime | None:
    """The first hour that can be open once the topic's backlog is worked off: the gold query's
    watermark (the newest event time less the delay) marks the last closed hour's end; one hour
    before it stays in the open cells as the overlap readers hide (streaming/open_state.py)."""
    if gold is None or not gold.watermark:
        return None
    watermark = datetime.fromisoformat(gold.watermark).replace(tzinfo=None)  # UTC
    if watermark.year < 1971:  # Spark's watermark before any event: the epoch
        return None
    return watermark.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def start_gold(spark: SparkSession, lake: Lake, checkpoint: str, trigger: dict) -> StreamingQuery:
    """Stream `stream_events` (Delta's source: each ingest commit whole, exactly once) into the
    live gold table (Delta's sink: exactly-once through the checkpoint and the table's log)."""
    lake.ensure_table(spark, STREAM_EVENTS)
    lake.ensure_table(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
    events = spark.readStream.format(DELTA).load(lake.table_uri(STREAM_EVENTS))
    return (
        events.transform(gold_from_events)
        .writeStream.queryName(STREAM_GOLD_QUERY)
        .format(DELTA)
        .option("checkpointLocation", checkpoint)
        .outputMode("append")
        .trigger(**trigger)
        .start(lake.table_uri(GOLD_STREAM_FUNNEL_HOURLY_BRAND))
    )


class _Progress:
    """Totals per query, fed by polling `recentProgress` (well inside its 100-entry history)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.totals: dict[str, QueryTotals] = {}
        self.seen: dict[str, set[int]] = {}
        self.log = log

    def collect(self, query: StreamingQuery) -> None:
        totals = self.totals.setdefault(query.name, QueryTotals(query.name))
        seen = self.seen.setdefault(query.name, set())
        for progress in query.recentProgress:
            entry = json.loads(progress.json)
            # a Spark Connect client's JSON leaves the derived total out; the object has it
            entry.setdefault("numInputRows", progress.numInputRows)
            if entry["batchId"] in seen:
                continue
            seen.add(entry["batchId"])
            totals.add(entry)
            if entry.get("numInputRows"):
                self.log(
                    f"{query.name}: batch {entry['batchId']} read {entry['numInputRows']:,} rows in "
                    f"{entry['durationMs'].get('triggerExecution', 0) / 1000:.1f}s; watermark "
                    f"{entry.get('eventTime', {}).get('watermark', '-')}"
                )


def _raise_if_failed(query: StreamingQuery) -> None:
    if query.exception() is not None:
        raise RuntimeError(f"streaming query {query.name} failed: {query.exception()}")


def _await(
    queries: list[StreamingQuery],
    progress: _Progress,
    deadline: float | None,
    log,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Wait until every query has stopped (or the deadline passes), collecting progress and
    calling `on_tick` about every second."""
    try:
        while any(q.isActive for q in queries):
            for query in queries:
                _raise_if_failed(query)
            if deadline is not None and time.monotonic() > deadline:
                log("stopping: max_runtime_seconds reached")
                break
            for query in queries:
                progress.collect(query)
            if on_tick is not None:
                on_tick()
            queries[0].awaitTermination(1)
        for query in queries:
            _raise_if_failed(query)
            progress.collect(query)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()


def run_stream(
    spark: SparkSession,
    source_options: dict[str, str],
    lake: Lake,
    checkpoint_root: str,
    available_now: bool = True,
    processing_time_seconds: int = 30,
    max_runtime_seconds: float | None = None,
    ledger_seconds: int | None = None,
    log: Callable[[str], None] = print,
    live: LiveSettings | None = LiveSettings(),
    on_tick: Callable[[], None] | None = None,
) -> dict[str, QueryTotals]:
    """Run the ingest, gold and (unless `live` is None) open-state queries and total their
    progress per query name. In a continuous run the open-state query triggers every
    `processing_time_seconds`, the ingest and gold queries every `ledger_seconds` (by default the
    same). A continuous run calls `on_tick` about every second while its
    queries run (the live judge). A failed query raises its exception after the others are stopped,
    so a run never leaves a query behind."""
    root = checkpoint_root.rstrip("/")
    checkpoints = {
        name: f"{root}/{name}" for name in (STREAM_INGEST_QUERY, STREAM_GOLD_QUERY, STREAM_OPEN_QUERY)
    }
    progress = _Progress(log)
    deadline = time.monotonic() + max_runtime_seconds if max_runtime_seconds is not None else None

    def ingest(trigger: dict) -> StreamingQuery:
        return start_ingest(spark, source_options, lake, checkpoints[STREAM_INGEST_QUERY], trigger)

    def gold(trigger: dict) -> StreamingQuery:
        return start_gold(spark, lake, checkpoints[STREAM_GOLD_QUERY], trigger)

    def open_state(trigger: dict, since: datetime | None = None) -> StreamingQuery:
        return start_open(spark, source_options, lake, checkpoints[STREAM_OPEN_QUERY], trigger, live, since)

    starts = [(STREAM_INGEST_QUERY, ingest), (STREAM_GOLD_QUERY, gold)]
    if live is not None:
        starts.append((STREAM_OPEN_QUERY, open_state))
    for name, start in starts:
        if name != STREAM_GOLD_QUERY:  # the Kafka queries (SPARK-55271)
            finish_uncommitted_batch(name, checkpoints[name], start, log)
    if available_now:
        # one after another: gold reads what ingest published; each stops at the end it found
        for name, start in starts:
            if name == STREAM_OPEN_QUERY:
                since = open_hours_start(progress.totals.get(STREAM_GOLD_QUERY))
                _await([open_state({"availableNow": True}, since)], progress, deadline, log)
            else:
                _await([start({"availableNow": True})], progress, deadline, log)
    else:

        def every(seconds: int) -> dict:
            return {"processingTime": f"{seconds} seconds"}

        ledger = every(ledger_seconds or processing_time_seconds)
        queries: list[StreamingQuery] = []
        try:
            for name, start in starts:
                queries.append(start(every(processing_time_seconds) if name == STREAM_OPEN_QUERY else ledger))
        except BaseException:
            for query in queries:  # a run never leaves a query behind, even one whose peer failed to start
                query.stop()
            raise
        _await(queries, progress, deadline, log, on_tick)
    for name, _ in starts:
        progress.totals.setdefault(name, QueryTotals(name))
    return progress.totals
