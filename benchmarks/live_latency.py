"""End-to-end freshness of the live funnel: from a message's produce time to the moment the API's
live answer includes it.

    .venv/bin/python benchmarks/live_latency.py --serve                 # 2,000 events/s for 90 s, 5 s trigger
    .venv/bin/python benchmarks/live_latency.py --serve --rate 10000 --seconds 60

1. generates sample events and starts a local Apache Kafka broker on a free port;
2. runs the streaming job continuously (`run_stream(available_now=False)`, the trigger interval
   given) in a thread of this process, on a local Spark;
3. produces the events in event-time order at a steady rate, noting the produce time of
   every message;
4. asks for the live answer every `--poll-seconds` (1 s, as the dashboard does): with `--serve`,
   `GET /api/live` of a `funnelpulse serve` started with its defaults; without, the same query
   over a replica this process refreshes itself. It notes when the open state's `as_of` (the
   newest event time included) first reaches each message's event time;
5. prints p50 / p95 / max of produce → visible over the messages sent after a warm-up (the first
   triggers pay the JVM's warm-up), and the trigger interval.

A message is visible when the open state that contains it is published (after the open-state
query's micro-batch) and the server has copied it: latency = wait for the next trigger + the
micro-batch + publishing + the server's next live refresh (every 0.5 s) + the reader's next poll.

    .venv/bin/python benchmarks/live_latency.py --serve --prefill-events 5000000

With `--prefill-events N`, the run watches one open hour: it first sends N events into the
hour's first half and waits until the open state shows them and the ingest query has stored
them (then `--settle-seconds`), then produces the scored events in the hour's second half, their
event times advancing with the clock, as a live shop's do (without it, the replay runs through
the generated days' event time far faster than the clock, so each open hour holds few events).

    .venv/bin/python benchmarks/live_latency.py --open-hour-growth 10000,100000,1000000,5000000

With `--open-hour-growth`, it measures instead what a micro-batch of the open-state query costs as its open hour grows: it
fills one hour of the topic up to each size in turn (the query absorbs the fill), waits
`--settle-seconds` (what the machine still does after a large fill: the JVM's collections, the
disk's flushes), then sends `--probe-events` more into the same hour three times and reports
the median of those micro-batches' durations (Spark's `triggerExecution`) and of their phases
at each size, and the keys the open state holds. Flat means incremental.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd
from figures import flat, record  # benchmarks/figures.py: the performance page

from funnelpulse_dagster.generator import generate
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.resources import KafkaResource, StreamingResource
from funnelpulse_dagster.runtime.services import free_port, wait_for_http
from funnelpulse_dagster.runtime.spark_session import classic_session, spark_conf
from funnelpulse_dagster.serving import queries
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.settings import spark_conf_overrides
from funnelpulse_dagster.streaming import broker
from funnelpulse_dagster.streaming.job import run_stream
from funnelpulse_evaluation.exports import export_messages

DEFAULT_RATE = 2_000  # events per second: the rate the freshness target is set at


def _synthetic(hour: datetime, count: int, seed: int, span_seconds: int = 3600) -> list[tuple[bytes, bytes]]:
    """`count` events in the first `span_seconds` of `hour`: views, carts, purchases over many
    sessions, users, brands."""
    rng = random.Random(seed)
    kinds = ["view"] * 6 + ["cart"] * 3 + ["purchase", "remove_from_cart"]
    out = []
    for _ in range(count):
        session = rng.randrange(count // 4 + 10)
        event = {
            "event_time": (hour + timedelta(seconds=rng.randrange(span_seconds))).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            ),
            "event_type": rng.choice(kinds),
            "product_id": rng.randrange(50_000),
            "category_id": 1,
            "category_code": None,
            "brand": f"brand{rng.randrange(300)}" if rng.random() < 0.6 else None,
            "price": f"{rng.uniform(1, 60):.2f}",
            "user_id": session // 2,
            "user_session": f"s{seed}-{session}",
        }
        out.append((json.dumps(event).encode(), event["user_session"].encode()))
    return out


PREFILL_HOUR = datetime(2019, 10, 1, 0)  # with --prefill-events: the open hour the run watches


def _in_real_time(
    messages: list[tuple[pd.Timestamp, bytes, bytes]], start: datetime, rate: float
) -> list[tuple[pd.Timestamp, bytes, bytes]]:
    """The messages with event times from `start` advancing as fast as the clock at `rate`
    messages a second, so a run stays in one open hour as a live shop's would."""
    out = []
    for i, (_, value, key) in enumerate(messages):
        moment = pd.Timestamp(start) + pd.Timedelta(seconds=i / rate)
        event = json.loads(value)
        event["event_time"] = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append((moment.floor("s"), json.dumps(event).encode(), key))
    return out


def _prefill(count: int, kafka, producer, lake: Lake, live_as_of, settle_seconds: float) -> float:
    """Send `count` events into the first half of the watched open hour and wait until the open
    state shows them and the ingest query has stored them, then `settle_seconds` more (the gold
    query's backlog); returns how long the stream took to absorb them."""
    from funnelpulse_dagster.tables import STREAM_EVENTS

    newest = pd.Timestamp(PREFILL_HOUR) + pd.Timedelta(minutes=30) - pd.Timedelta(seconds=1)
    for start in range(0, count, 500_000):
        for i, (value, key) in enumerate(_synthetic(PREFILL_HOUR, min(500_000, count - start), start, 1800)):
            producer.produce(kafka.topic, value=value, key=key)
            if i % 10_000 == 0:
                producer.poll(0)
    assert producer.flush(120) == 0
    started = time.monotonic()
    while True:
        try:
            as_of = live_as_of()
        except Exception:  # noqa: BLE001 - a state being replaced mid-copy: ask again
            as_of = None
        shown = as_of is not None and pd.Timestamp(as_of.rstrip("Z")) >= newest - pd.Timedelta(minutes=1)
        stored = lake.is_table(STREAM_EVENTS) and sum(lake.rows_by_partition(STREAM_EVENTS).values()) >= count
        if shown and stored:
            break
        if time.monotonic() - started > 3600:
            raise TimeoutError("the stream did not absorb the prefill within an hour")
        time.sleep(2)
    absorbed = time.monotonic() - started
    time.sleep(settle_seconds)
    return round(absorbed, 1)


def _phases(batches: list[dict]) -> dict[str, int]:
    """Milliseconds of a probe's micro-batches in each of Spark's phases (`durationMs`), summed."""
    phases: dict[str, int] = {}
    for batch in batches:
        for phase, ms in batch["durationMs"].items():
            phases[phase] = phases.get(phase, 0) + ms
    return phases


def open_hour_growth(sizes: list[int], probe_events: int, partitions: int, settle_seconds: float) -> dict:
    """Per-batch cost of the open-state query as its open hour grows (see the module docstring)."""
    from funnelpulse_dagster.streaming.job import LiveSettings, start_open
    from funnelpulse_dagster.streaming.open_state import held_keys

    work = Path(tempfile.mkdtemp(prefix="funnelpulse-open-growth-"))
    bootstrap = f"127.0.0.1:{free_port()}"
    broker.start(work, bootstrap)
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic="growth", topic_partitions=partitions)
    kafka.ensure_topic()
    spark = classic_session(spark_conf("local[2]", "4g", 4, spark_conf_overrides()))
    lake, checkpoint = Lake(str(work / "tables")), str(work / "checkpoints" / "open")
    options = kafka.spark_stream_source(250_000)
    hour = datetime(2019, 10, 7, 14)
    producer = kafka.producer()

    def send(messages: list[tuple[bytes, bytes]]) -> None:
        for i, (value, key) in enumerate(messages):
            producer.produce(kafka.topic, value=value, key=key)
            if i % 10_000 == 0:
                producer.poll(0)
        assert producer.flush(120) == 0

    query = start_open(spark, options, lake, checkpoint, {"processingTime": "1 second"}, LiveSettings())
    seen_batches: set[int] = set()

    def batches_until(total: int, timeout: float = 900) -> list[dict]:
        """The query's new micro-batches, once it has read `total` messages in all."""
        deadline = time.monotonic() + timeout
        new: list[dict] = []
        while time.monotonic() < deadline:
            if query.exception() is not None:
                raise RuntimeError(query.exception())
            for progress in query.recentProgress:
                entry = json.loads(progress.json)
                if entry["batchId"] not in seen_batches and progress.numInputRows:
                    seen_batches.add(entry["batchId"])
                    new.append(entry)
            ends = [json.loads(s["endOffset"]) if isinstance(s["endOffset"], str) else s["endOffset"]
                    for e in new[-1:] for s in e["sources"]]  # fmt: skip
            if ends and sum(sum(p.values()) for end in ends for p in end.values()) >= total:
                return new
            time.sleep(0.5)
        raise TimeoutError(f"the open-state query did not reach {total} messages")

    rows: list[dict] = []
    sent = 0
    try:
        for size in sizes:
            send(_synthetic(hour, max(size - sent, 0), seed=size))
            started = time.perf_counter()
            batches_until(size)
            fill_seconds = time.perf_counter() - started
            sent = size
            # the background work after a large fill would land in the first probe; the probes
            # measure the steady state
            time.sleep(settle_seconds)
            probes, breakdowns = [], []
            for round_ in range(3):
                send(_synthetic(hour, probe_events, seed=size + round_ + 1))
                sent += probe_events
                batches = batches_until(sent)
                probes.append(sum(b["durationMs"]["triggerExecution"] for b in batches) / 1000)
                breakdowns.append(_phases(batches))
            rows.append(
                {
                    "open_hour_events": sent,
                    "fill_seconds": round(fill_seconds, 1),
                    "probe_events": probe_events,
                    "probe_batch_seconds_median": round(statistics.median(probes), 2),
                    "probe_batch_seconds": [round(p, 2) for p in probes],
                    # the median probe's phases (ms), to show what grows
                    "median_probe_phases_ms": breakdowns[probes.index(statistics.median(probes))],
                    "keys_held": held_keys(f"{checkpoint}_cells"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        query.stop()
        spark.stop()
        broker.stop(work)
        shutil.rmtree(work, ignore_errors=True)
    return {"open_hour_growth": rows}


def _start_serve(work: Path, lake: Lake) -> tuple[subprocess.Popen, str]:
    """`funnelpulse serve` with its defaults over the benchmark's lake, on a free port."""
    port = free_port()
    env = {**os.environ, "FUNNELPULSE_HOME": str(work / "home"), "FUNNELPULSE_LAKE": lake.root}
    process = subprocess.Popen(
        [sys.executable, "-m", "funnelpulse_dagster.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if wait_for_http(f"{url}/health", timeout=60):
        return process, url
    process.kill()
    raise RuntimeError("funnelpulse serve did not start")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events per second")
    parser.add_argument("--seconds", type=float, default=90, help="how long to produce")
    parser.add_argument(
        "--warmup-seconds", type=float, default=20, help="messages sent before this are not scored"
    )
    parser.add_argument("--trigger-seconds", type=int, default=5, help="the streaming job's trigger interval")
    parser.add_argument(
        "--ledger-trigger-seconds",
        type=int,
        default=StreamingResource.model_fields["ledger_processing_time_seconds"].default,
        help="the ingest and gold queries' trigger interval (the streaming resource's default)",
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--open-hour-growth",
        help="comma-separated open-hour sizes: measure the open-state query's per-batch cost instead",
    )
    parser.add_argument("--probe-events", type=int, default=2_000)
    parser.add_argument(
        "--settle-seconds", type=float, default=30, help="with --open-hour-growth: wait after each fill"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="poll GET /api/live of a `funnelpulse serve` started with its defaults, as the dashboard does",
    )
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often the reader asks")
    parser.add_argument(
        "--prefill-events",
        type=int,
        default=0,
        help="first fill the watched open hour with this many events (its first half), then produce "
        "the scored events in its second half with event times advancing with the clock",
    )
    args = parser.parse_args()
    if args.open_hour_growth:
        sizes = [int(s) for s in args.open_hour_growth.split(",")]
        figures = open_hour_growth(sizes, args.probe_events, partitions=4, settle_seconds=args.settle_seconds)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        record("open_hour_growth", [flat("a micro-batch of the open-state query by open-hour size", figures)])
        return 0

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
    messages = export_messages(work / "raw", count=total)
    if args.prefill_events:
        messages = _in_real_time(messages, PREFILL_HOUR + timedelta(minutes=30), args.rate)
    broker.start(work, bootstrap)
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic="latency", topic_partitions=4)
    kafka.ensure_topic()
    spark = classic_session(spark_conf("local[2]", "4g", 4, spark_conf_overrides()))
    lake = Lake(str(work / "tables"))
    # with a prefill, the resource's admission limit (what a user runs); without, smaller
    # micro-batches while the JVM warms up
    options = kafka.spark_stream_source(250_000 if args.prefill_events else 50_000)
    stream_error: list[BaseException] = []

    stream_totals: dict = {}

    def stream() -> None:
        try:
            stream_totals.update(
                run_stream(
                    spark,
                    options,
                    lake,
                    str(work / "checkpoints"),
                    available_now=False,
                    processing_time_seconds=args.trigger_seconds,
                    ledger_seconds=args.ledger_trigger_seconds,
                    max_runtime_seconds=None if args.prefill_events else args.seconds + 60,
                    log=lambda _: None,
                )
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

    server = _start_serve(work, lake) if args.serve else None

    def live_as_of() -> str | None:
        if server is not None:  # what a user's dashboard gets: GET /api/live from `funnelpulse serve`
            with urllib.request.urlopen(f"{server[1]}/api/live?hours=1", timeout=5) as response:
                return json.load(response)["open"]["as_of"]
        store.refresh()
        return queries.live_funnel(store.cursor(), hours=1)["open"]["as_of"]

    store = LakeStore(lake.root, mode="replica", database=work / "replica.duckdb")

    def poll() -> None:
        while not done.is_set():
            try:
                as_of = live_as_of()
                if as_of:
                    seen.append((time.time(), pd.Timestamp(as_of.rstrip("Z"))))
            except Exception:  # noqa: BLE001 - a state being replaced mid-copy: the next poll
                poll_errors.append(time.time())
            time.sleep(args.poll_seconds)

    producer = kafka.producer(**{"linger.ms": 5})
    prefill_seconds = None
    if args.prefill_events:
        prefill_seconds = _prefill(
            args.prefill_events, kafka, producer, lake, live_as_of, args.settle_seconds
        )
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
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
        "ledger_trigger_seconds": args.ledger_trigger_seconds,
        "scored_messages": scored,
        "seen_messages": len(latencies),
        "p50_s": round(quantiles[49], 1),
        "p95_s": round(quantiles[94], 1),
        "max_s": round(max(latencies), 1) if latencies else None,
        "failed_polls": len(poll_errors),
        "serve": bool(args.serve),
    }
    if args.prefill_events:
        figures["open_hour_prefill_events"] = args.prefill_events
        figures["prefill_absorbed_seconds"] = prefill_seconds
    if server is not None:
        server[0].terminate()
        server[0].wait(20)
    for query in spark.streams.active:  # before the broker goes: no reconnect noise
        query.stop()
    streamer.join(30)
    for name, totals in stream_totals.items():  # each query's micro-batches: median and p95
        ordered = sorted(totals.batch_seconds)
        if ordered:
            figures[f"{name}_batch_seconds_median"] = round(statistics.median(ordered), 2)
            figures[f"{name}_batch_seconds_p95"] = round(ordered[int(0.95 * (len(ordered) - 1))], 2)
            figures[f"{name}_batches"] = len(ordered)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    # the target rate's section, and one for a rate above what 2 cores keep up with
    name = "live_latency" if args.rate <= DEFAULT_RATE else "live_latency_high_rate"
    title = f"produced → visible at {args.rate:,.0f} events/s"
    if args.prefill_events:
        name, title = (
            "live_latency_full_hour",
            f"{title}, the open hour holding {args.prefill_events:,} events",
        )
    record(name, [flat(title, figures)])
    broker.stop(work)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
