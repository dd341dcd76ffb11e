"""A Spark Structured Streaming source for Kafka written with PySpark's Python Data Source API.

Spark's own connector (`spark-sql-kafka-0-10`) is a Maven artifact that a pip-only laptop cannot
fetch, so this source reads the topic with confluent-kafka instead. It yields exactly the
columns of Spark's `kafka` source (tables.KAFKA_MESSAGE_SCHEMA), so the streaming job runs
unchanged on either (`KafkaResource.spark_source`).

Semantics:
- offsets are {"<partition>": next offset}; Spark stores them in the checkpoint, so a restarted
  query resumes exactly after the last committed micro-batch (exactly-once with a file sink);
- admission control: `maxEventsPerTrigger` caps a micro-batch, split over partitions in
  proportion to their backlog so that no partition falls behind in event time (the watermark
  would otherwise drop its rows as late);
- `Trigger.AvailableNow`: the end offsets are fixed when the query starts, and the query stops
  once it has read up to them.

The planning methods run in one long-lived driver-side Python process; `read()` runs in Python
workers on an unpickled copy, so clients are created lazily and never pickled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

from funnelpulse_dagster.streaming.offsets import end_offsets, planner_consumer, topic_partitions
from funnelpulse_dagster.tables import KAFKA_MESSAGE_SCHEMA

SOURCE_NAME = "funnelpulse_kafka"
# options that are not passed to the Kafka client
_OWN_OPTIONS = {
    "topic",
    "maxeventspertrigger",
    "endoffsets",
    "startingoffsets",
    "maxoffsetspersplit",
    "readtimeoutseconds",
}
_ARROW_BATCH_ROWS = 50_000


def kafka_client_config(options: dict[str, str]) -> dict[str, Any]:
    """`kafka.<setting>` options become librdkafka settings (as with Spark's connector)."""
    return {k.removeprefix("kafka."): v for k, v in options.items() if k.startswith("kafka.")}


@dataclass(frozen=True)
class OffsetRange(InputPartition):
    partition: int
    start: int  # first offset to read
    end: int  # first offset not to read


def _as_offsets(value: dict) -> dict[int, int]:
    # JSON round trips through the checkpoint turn integer keys into strings
    return {int(p): int(o) for p, o in value.items()}


def _to_json_offsets(offsets: dict[int, int]) -> dict[str, int]:
    return {str(p): int(o) for p, o in sorted(offsets.items())}


def apportion(start: dict[int, int], end: dict[int, int], max_rows: int) -> dict[int, int]:
    """End offsets that admit at most `max_rows` messages, shared in proportion to backlog.

    Every partition with a backlog moves by at least one message, so a tiny limit still makes
    progress (the batch may then exceed the limit by fewer than one message per partition).
    """
    backlog = {p: max(end[p] - start.get(p, 0), 0) for p in end}
    total = sum(backlog.values())
    if total <= max_rows:
        return dict(end)
    limited = {}
    for p, behind in backlog.items():
        share = math.floor(behind * max_rows / total)
        limited[p] = start.get(p, 0) + (min(max(share, 1), behind) if behind else 0)
    return limited


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: dict[str, str]) -> None:
        lowered = {k.lower(): v for k, v in options.items()}
        if "topic" not in lowered or "kafka.bootstrap.servers" not in lowered:
            raise ValueError(f"the {SOURCE_NAME} source needs the options topic and kafka.bootstrap.servers")
        self.topic = lowered["topic"]
        self.client_config = kafka_client_config(
            {k: v for k, v in options.items() if k.lower() not in _OWN_OPTIONS}
        )
        self.max_events = int(lowered["maxeventspertrigger"]) if lowered.get("maxeventspertrigger") else None
        self.end_mode = lowered.get("endoffsets", "fetch")
        self.starting = lowered.get("startingoffsets", "earliest")
        self.max_offsets_per_split = int(lowered.get("maxoffsetspersplit", 500_000))
        self.read_timeout = float(lowered.get("readtimeoutseconds", 120))
        self._target: dict[int, int] | None = None
        self._consumer = None

    # -- pickling: read() runs on a copy in a worker ---------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_consumer"] = None
        return state

    def _planner(self):
        if self._consumer is None:
            self._consumer = planner_consumer(self.client_config)
        return self._consumer

    def _latest(self) -> dict[int, int]:
        return end_offsets(self._planner(), self.topic, self.end_mode)

    # -- planning (driver) -------------------------------------------------------------------
    def initialOffset(self) -> dict:
        if self.starting == "latest":
            return _to_json_offsets(self._latest())
        if self.starting != "earliest":
            raise ValueError(f"startingOffsets must be 'earliest' or 'latest', got {self.starting!r}")
        from confluent_kafka import TopicPartition

        consumer = self._planner()
        partitions = topic_partitions(consumer, self.topic)
        return _to_json_offsets(
            {p: max(consumer.get_watermark_offsets(TopicPartition(self.topic, p))[0], 0) for p in partitions}
        )

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_events) if self.max_events else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = self._latest()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        begin = _as_offsets(start)
        end = dict(self._target) if self._target is not None else self._latest()
        for p, offset in begin.items():
            if end.get(p, 0) < offset:
                raise RuntimeError(
                    f"topic {self.topic} partition {p} ends at {end.get(p, 0)}, before the checkpoint's "
                    f"offset {offset}: the topic was recreated (an embedded broker keeps topics in "
                    "memory). Delete the query's checkpoint directory to start over."
                )
        for p in end:
            begin.setdefault(p, 0)  # a partition added to the topic starts at its beginning
        if isinstance(limit, ReadMaxRows):
            end = apportion(begin, end, limit.max_rows)
        return _to_json_offsets(end)

    def partitions(self, start: dict, end: dict) -> list[OffsetRange]:
        begin, finish = _as_offsets(start), _as_offsets(end)
        ranges = []
        for p, stop in sorted(finish.items()):
            lo = begin.get(p, 0)
            # long ranges are split so that one partition's backlog uses every core
            while lo < stop:
                hi = min(lo + self.max_offsets_per_split, stop)
                ranges.append(OffsetRange(p, lo, hi))
                lo = hi
        return ranges

    def commit(self, end: dict) -> None:
        # progress lives in Spark's checkpoint; nothing to acknowledge to the broker
        return None

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- reading (Python workers) --------------------------------------------------------------
    def read(self, partition: OffsetRange) -> Iterator:
        import pyarrow as pa
        from confluent_kafka import Consumer, KafkaError, TopicPartition
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(KAFKA_MESSAGE_SCHEMA, timezone="UTC")
        consumer = Consumer(
            {
                **self.client_config,
                "group.id": "funnelpulse-stream-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                # large fetches: a micro-batch reads a known range as fast as the broker sends it
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "queued.min.messages": 200_000,
                "auto.offset.reset": "error",
            }
        )

        def batch(messages: list) -> pa.RecordBatch:
            # column-wise list comprehensions: this loop is the source's hot path
            n = len(messages)
            stamps = [m.timestamp() for m in messages]
            return pa.RecordBatch.from_arrays(
                [
                    pa.array([m.key() for m in messages], pa.binary()),
                    pa.array([m.value() for m in messages], pa.binary()),
                    pa.array([self.topic] * n, pa.string()),
                    pa.array([partition.partition] * n, pa.int32()),
                    pa.array([m.offset() for m in messages], pa.int64()),
                    pa.array(
                        [ms * 1000 if ms >= 0 else None for _, ms in stamps], schema.field("timestamp").type
                    ),
                    pa.array([kind for kind, _ in stamps], pa.int32()),
                ],
                schema=schema,
            )

        try:
            consumer.assign([TopicPartition(self.topic, partition.partition, partition.start)])
            pending: list = []
            position = partition.start
            last_progress = time.monotonic()
            while position < partition.end:
                messages = consumer.consume(min(50_000, partition.end - position), 1.0)
                if not messages and time.monotonic() - last_progress > self.read_timeout:
                    raise TimeoutError(
                        f"{self.topic}[{partition.partition}]: no message for {self.read_timeout}s at "
                        f"offset {position}, expected offsets up to {partition.end}"
                    )
                for message in messages:
                    error = message.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"{self.topic}[{partition.partition}] at {position}: {error}")
                wanted = [m for m in messages if m.error() is None and m.offset() < partition.end]
                if wanted:
                    last_progress = time.monotonic()
                    position = wanted[-1].offset() + 1
                    pending.extend(wanted)
                elif any(m.error() is None for m in messages):
                    position = partition.end  # only offsets past the range: done
                if len(pending) >= _ARROW_BATCH_ROWS:
                    yield batch(pending)
                    pending = []
            if pending:
                yield batch(pending)
        finally:
            consumer.close()


class KafkaDataSource(DataSource):
    """`spark.readStream.format("funnelpulse_kafka").option("topic", ...)
    .option("kafka.bootstrap.servers", ...)`; other `kafka.*` options go to the client."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return KAFKA_MESSAGE_SCHEMA

    def streamReader(self, schema: StructType) -> KafkaStreamReader:
        return KafkaStreamReader(dict(self.options))


def register(spark) -> None:
    """Make the source available to `spark` (idempotent)."""
    spark.dataSource.register(KafkaDataSource)
