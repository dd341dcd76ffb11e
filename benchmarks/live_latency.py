"""End-to-end freshness of the live funnel: from a message's produce time to the moment the API's
live answer includes it.

    .venv/bin/python benchmarks/live_latency.py                       # 2,000 events/s for 90 s, 5 s trigger
    .venv/bin/python benchmarks/live_latency.py --trigger-seconds 2 --rate 2000 --seconds 90

1. generates a day of sample events and starts the embedded broker on a free port;
2. runs the streaming job continuously (`run_stream(available_now=False)`, the trigger interval
   given) in a thread of this process, on a local Spark;
3. produces the day's events in event-time order at a steady rate, noting the produce time of
   every message;
4. polls the live answer the API gives (`queries.live_funnel` over a refreshed DuckDB replica, the
   code behind `/api/live`) every 0.5 s, noting when its open state's `as_of` (the newest event
   time included) first reaches each message's event time;
5. prints p50 / p95 / max of produce → visible over the messages sent after a warm-up (the first
   triggers pay the JVM's warm-up), and the trigger interval.

A message is visible when the open state that contains it is published (after its micro-batch)
and the replica has copied it: latency = wait for the next trigger + the micro-batch + publishing
the open state + the replica's refresh.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd

from funnelpulse_dagster.generator import generate
from funnelpulse_dagster.lake import Lake
from funnelpulse_dagster.resources import KafkaResource
from funnelpulse_dagster.resources.spark import classic_session, spark_conf
from funnelpulse_dagster.services import free_port
from funnelpulse_dagster.serving import queries
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.streaming import broker
from funnelpulse_dagster.streaming.job import run_stream

RAW = ["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price", "user_id", "user_session"]  # fmt: skip


def _messages(raw: Path, count: int) -> list[tuple[pd.Timestamp, bytes, bytes]]:
    frame = pd.concat(pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(raw.glob("*.csv")))
    frame["parsed_time"] = pd.to_datetime(frame["event_time"].str.removesuffix(" UTC"), errors="coerce")
    frame = frame.dropna(subset=["parsed_time"]).sort_values("parsed_time").head(count)
    out = []
    for row in frame.itertuples(index=False):
        record = {k: (getattr(row, k) or None) for k in RAW}
        key = (record["user_session"] or record["user_id"] or "").encode()
        out.append((row.parsed_time, json.dumps(record).encode(), key))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=2_000, help="events per second")
    parser.add_argument("--seconds", type=float, default=90, help="how long to produce")
    parser.add_argument(
        "--warmup-seconds", type=float, default=20, help="messages sent before this are not scored"
    )
    parser.add_argument("--trigger-seconds", type=int, default=5, help="the streaming job's trigger interval")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="funnelpulse-latency-"))
    bootstrap = f"127.0.0.1:{free_port()}"
    total = int(args.rate * args.seconds)
    generate(
        work / "raw",
        date(2019, 10, 1),
        max(1, total // 135_000 + 1),
        seed=5,
        ground_truth_path=work / "t.csv",
    )
    messages = _messages(work / "raw", total)
    broker.start(work, bootstrap)
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic="latency", topic_partitions=4)
    kafka.ensure_topic()
    spark = classic_session(spark_conf("local[2]", "4g", 4, {}))
    lake = Lake(str(work / "tables"))
    options = kafka.spark_stream_source(50_000)
    stream_error: list[BaseException] = []

    def stream() -> None:
        try:
            run_stream(
                spark,
                options,
                lake,
                str(work / "checkpoints"),
                available_now=False,
                processing_time_seconds=args.trigger_seconds,
                max_runtime_seconds=args.seconds + 60,
                log=lambda _: None,
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            stream_error.append(exc)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    time.sleep(15)  # the queries start (JVM classes load) before the clock starts

    produced: list[tuple[pd.Timestamp, float]] = []
    seen: list[tuple[float, pd.Timestamp]] = []
    done = threading.Event()
    poll_errors: list[float] = []

    def poll() -> None:
        store = LakeStore(lake.root, mode="replica", database=work / "replica.duckdb")
        while not done.is_set():
            try:
                store.refresh()
                as_of = queries.live_funnel(store.cursor(), hours=1)["open"]["as_of"]
                if as_of:
                    seen.append((time.time(), pd.Timestamp(as_of.rstrip("Z"))))
            except Exception:  # noqa: BLE001 - a state being replaced mid-copy: the next poll
                poll_errors.append(time.time())
            time.sleep(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    producer = kafka.producer(**{"linger.ms": 5})
    started = time.time()
    for i, (event_time, value, key) in enumerate(messages):
        due = started + i / args.rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        producer.produce(kafka.topic, value=value, key=key)
        produced.append((event_time, time.time()))
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(30)
    time.sleep(args.trigger_seconds * 3 + 15)
    done.set()
    poller.join(10)
    if stream_error:
        raise stream_error[0]

    latencies = []
    for event_time, sent_at in produced[:: max(1, len(produced) // 2000)]:
        if sent_at - started < args.warmup_seconds:
            continue
        visible = next((t for t, as_of in seen if as_of >= event_time and t >= sent_at), None)
        if visible is not None:
            latencies.append(visible - sent_at)
    scored = len(
        [1 for _, s in produced[:: max(1, len(produced) // 2000)] if s - started >= args.warmup_seconds]
    )
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [float("nan")] * 99
    figures = {
        "rate_events_per_s": args.rate,
        "produced": len(produced),
        "produce_seconds": round(produced[-1][1] - started, 1),
        "trigger_seconds": args.trigger_seconds,
        "scored_messages": scored,
        "seen_messages": len(latencies),
        "p50_s": round(quantiles[49], 1),
        "p95_s": round(quantiles[94], 1),
        "max_s": round(max(latencies), 1) if latencies else None,
        "failed_polls": len(poll_errors),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    for query in spark.streams.active:  # before the broker goes: no reconnect noise
        query.stop()
    streamer.join(30)
    broker.stop(work)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
