"""Kafka offsets: where a topic ends, and how far a streaming checkpoint has got.

Shared by the Spark source (planning micro-batches), the sensor (is there anything new?) and
the CLI (broker status), so all three agree on what "new data" means.

The embedded broker (Tansu 0.6) under-reports the end of a partition through ListOffsets
(`get_watermark_offsets`); the high watermark that comes back with a fetch response is right.
`end_offsets(..., mode="fetch")` therefore fetches one message from just before the listed end
and reads the cached high watermark; real Kafka answers ListOffsets correctly (`mode="list"`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from funnelpulse_dagster.lakehouse import lakefs

END_OFFSET_MODES = ("fetch", "list")


class KafkaUnavailable(RuntimeError):
    """The broker cannot be reached or the topic does not exist."""


def planner_consumer(client_config: Mapping[str, Any]):
    """A consumer for metadata and offset probes: no group membership, no commits."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            **client_config,
            "group.id": "funnelpulse-offset-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # each end-of-partition check otherwise waits for the broker's default 500 ms
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "error",
        }
    )


def topic_partitions(consumer, topic: str, timeout: float = 10.0) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except Exception as exc:  # KafkaException with a transport error
        raise KafkaUnavailable(f"Kafka broker unreachable: {exc}") from exc
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        detail = info.error if info is not None else "unknown topic"
        raise KafkaUnavailable(f"Kafka topic {topic!r} is not available: {detail}")
    return sorted(info.partitions)


def end_offsets(consumer, topic: str, mode: str = "fetch", timeout: float = 10.0) -> dict[int, int]:
    """The next offset to be written in every partition of `topic`."""
    from confluent_kafka import KafkaError, TopicPartition

    if mode not in END_OFFSET_MODES:
        raise ValueError(f"end offset mode must be one of {END_OFFSET_MODES}, got {mode!r}")
    partitions = topic_partitions(consumer, topic, timeout)
    listed = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions
    }
    if mode == "list":
        return listed
    # Fetch from the listed end (never beyond the true end, so always in range); the fetch
    # response, or the end-of-partition event, carries the true high watermark.
    consumer.assign([TopicPartition(topic, p, max(listed[p], 0)) for p in partitions])
    try:
        pending = set(partitions)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(len(pending), 0.5):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaUnavailable(f"probing {topic}[{message.partition()}]: {error}")
                pending.discard(message.partition())
        if pending:
            raise KafkaUnavailable(
                f"no fetch response for {topic} partitions {sorted(pending)} in {timeout}s"
            )
        ends = {}
        for p in partitions:
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
            ends[p] = max(high, listed[p])
        return ends
    finally:
        consumer.unassign()


def offsets_from_json(value: Mapping[str, Any], topic: str) -> dict[int, int]:
    """Our source's offsets ({"0": 12, ...}) or Spark kafka's ({"topic": {"0": 12}})."""
    inner = value[topic] if isinstance(value.get(topic), Mapping) else value
    return {int(p): int(o) for p, o in inner.items()}


def committed_checkpoint_offsets(checkpoint: str | Path, topic: str) -> dict[int, int] | None:
    """End offsets of the last micro-batch a streaming checkpoint has committed, or None when
    the query has never committed one. Reads Spark's offset log (`offsets/<batch>`: a version
    line, a metadata line, then one JSON line per source) for the newest batch that also has a
    `commits/<batch>` marker, because an offset entry alone means "planned", not "done".
    The checkpoint may be a path or a URI on shared storage (`gs://…`), read through pyarrow."""
    root = str(checkpoint).rstrip("/")
    commits = _batch_ids(root, "commits")
    if not commits:
        return None
    lines = lakefs.read_text(f"{root}/offsets/{max(commits)}").splitlines()
    return offsets_from_json(json.loads(lines[2]), topic)


def _batch_ids(checkpoint_root: str, log: str) -> set[int]:
    return {int(name) for name in lakefs.child_names(f"{checkpoint_root}/{log}") if name.isdigit()}


def uncommitted_batch(checkpoint: str | Path) -> int | None:
    """The micro-batch a checkpoint planned (an `offsets/<batch>` entry) and never committed
    (no `commits/<batch>`): the batch a restarted query runs again first. None when there is none."""
    root = str(checkpoint).rstrip("/")
    planned = _batch_ids(root, "offsets")
    if not planned:
        return None
    newest = max(planned)
    return None if newest in _batch_ids(root, "commits") else newest


def backlog(ends: Mapping[int, int], committed: Mapping[int, int] | None) -> int:
    """Messages in the topic that the checkpoint has not processed."""
    done = committed or {}
    return sum(max(end - done.get(p, 0), 0) for p, end in ends.items())
