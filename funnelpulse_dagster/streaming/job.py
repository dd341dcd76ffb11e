"""The streaming job: Kafka → live hourly-brand gold (and dead letters), as Spark queries.

Two queries read the topic, each with its own checkpoint: the gold query (parse, silver rules,
de-duplication within the watermark, hourly windows by brand, append to Parquet) and the
dead-letter query (messages that are not valid events, with their raw bytes and reason). Both
use Spark's file sink, whose `_spark_metadata` log makes each micro-batch's output visible
exactly once even when a run is killed mid-batch; read the tables through Spark.

`run_stream` serves the Dagster asset, the CLI and the tests alike:
- `available_now=True`: process what the topic holds now (fixed when the run starts), then stop;
- `available_now=False`: a micro-batch every `processing_time_seconds`, until stopped or until
  `max_runtime_seconds` (for always-on deployments).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from funnelpulse_dagster.streaming.kafka_source import register
from funnelpulse_dagster.tables import (
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    STREAM_DEAD_LETTER_QUERY,
    STREAM_DEAD_LETTERS,
    STREAM_GOLD_QUERY,
    Table,
)
from funnelpulse_dagster.transforms.silver import SILVER_RULE_NAMES, violated_rule
from funnelpulse_dagster.transforms.stream import (
    REASON,
    clean_stream_events,
    dead_letters,
    parse_messages,
    stream_hourly_brand_funnel,
    valid_events,
)

INPUT_METRICS = "stream_input"
CLEAN_METRICS = "stream_clean"


@dataclass
class QueryTotals:
    """What a query did during one run, summed over its micro-batches."""

    name: str
    batches: int = 0
    input_rows: int = 0
    output_rows: int = 0  # rows written, where the sink reports them
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
        sink_rows = int((progress.get("sink") or {}).get("numOutputRows", -1) or 0)
        self.output_rows += max(sink_rows, 0)  # a file sink reports -1 (unknown)
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
        for metrics in (progress.get("observedMetrics") or {}).values():
            for key, value in metrics.items():
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


def read_messages(spark: SparkSession, source_format: str, options: dict[str, str]) -> DataFrame:
    if source_format != "kafka":
        register(spark)
    return spark.readStream.format(source_format).options(**options).load()


def gold_stream(messages: DataFrame) -> DataFrame:
    """Messages → gold rows, observing what happens to every message on the way."""
    parsed = messages.transform(parse_messages).observe(
        INPUT_METRICS,
        F.count(F.lit(1)).alias("messages"),
        F.count(F.when(F.col(REASON).isNotNull(), True)).alias("dead_letters"),
    )
    events = parsed.transform(valid_events)
    counted = events.observe(
        "stream_rules",
        *[
            F.count(F.when(violated_rule() == name, True)).alias(f"removed_{name}")
            for name in SILVER_RULE_NAMES
        ],
    )
    clean = counted.transform(clean_stream_events).observe(
        CLEAN_METRICS, F.count(F.lit(1)).alias("events_after_dedup")
    )
    return clean.transform(stream_hourly_brand_funnel)


def _file_sink(frame: DataFrame, table: Table, path: str, checkpoint: str, name: str, trigger: dict):
    return (
        frame.writeStream.queryName(name)
        .format("parquet")
        .option("checkpointLocation", checkpoint)
        .option("compression", "zstd")
        .partitionBy(table.partition_column)
        .outputMode("append")
        .trigger(**trigger)
        .start(path)
    )


def start_queries(
    spark: SparkSession,
    source_format: str,
    source_options: dict[str, str],
    table_uri: Callable[[Table], str],
    checkpoint_root: str,
    available_now: bool = True,
    processing_time_seconds: int = 30,
) -> dict[str, StreamingQuery]:
    trigger = (
        {"availableNow": True} if available_now else {"processingTime": f"{processing_time_seconds} seconds"}
    )
    root = checkpoint_root.rstrip("/")
    gold = gold_stream(read_messages(spark, source_format, source_options))
    dead = (
        read_messages(spark, source_format, source_options)
        .transform(parse_messages)
        .transform(dead_letters)
        .observe("dead_letter_output", F.count(F.lit(1)).alias("dead_letters_written"))
    )
    return {
        STREAM_GOLD_QUERY: _file_sink(
            gold,
            GOLD_STREAM_FUNNEL_HOURLY_BRAND,
            table_uri(GOLD_STREAM_FUNNEL_HOURLY_BRAND),
            f"{root}/{STREAM_GOLD_QUERY}",
            STREAM_GOLD_QUERY,
            trigger,
        ),
        STREAM_DEAD_LETTER_QUERY: _file_sink(
            dead,
            STREAM_DEAD_LETTERS,
            table_uri(STREAM_DEAD_LETTERS),
            f"{root}/{STREAM_DEAD_LETTER_QUERY}",
            STREAM_DEAD_LETTER_QUERY,
            trigger,
        ),
    }


def run_stream(
    spark: SparkSession,
    source_format: str,
    source_options: dict[str, str],
    table_uri: Callable[[Table], str],
    checkpoint_root: str,
    available_now: bool = True,
    processing_time_seconds: int = 30,
    max_runtime_seconds: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, QueryTotals]:
    """Run both queries to completion (or for `max_runtime_seconds`) and total their progress.

    A failed query raises its exception; the other is stopped first, so a run never leaves a
    query behind. Progress is polled every second, well inside Spark's 100-entry history.
    """
    queries = start_queries(
        spark,
        source_format,
        source_options,
        table_uri,
        checkpoint_root,
        available_now,
        processing_time_seconds,
    )
    totals = {name: QueryTotals(name) for name in queries}
    seen: dict[str, set[int]] = {name: set() for name in queries}
    started = time.monotonic()

    def collect() -> None:
        for name, query in queries.items():
            for progress in query.recentProgress:
                entry = json.loads(progress.json)
                if entry["batchId"] in seen[name]:
                    continue
                seen[name].add(entry["batchId"])
                totals[name].add(entry)
                if entry.get("numInputRows"):
                    log(
                        f"{name}: batch {entry['batchId']} read {entry['numInputRows']:,} messages in "
                        f"{entry['durationMs'].get('triggerExecution', 0) / 1000:.1f}s; watermark "
                        f"{entry.get('eventTime', {}).get('watermark', '-')}"
                    )

    try:
        while any(q.isActive for q in queries.values()):
            for query in queries.values():
                if query.exception() is not None:
                    raise RuntimeError(f"streaming query {query.name} failed: {query.exception()}")
            if max_runtime_seconds is not None and time.monotonic() - started > max_runtime_seconds:
                log(f"stopping after {max_runtime_seconds}s (max_runtime_seconds)")
                break
            collect()
            next(iter(queries.values())).awaitTermination(1)
        for query in queries.values():
            if query.exception() is not None:
                raise RuntimeError(f"streaming query {query.name} failed: {query.exception()}")
        collect()
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()
    return totals
