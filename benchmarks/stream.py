"""Streaming benchmark: replay throughput and topic → table throughput on ≈ 1 M events.

    .venv/bin/python benchmarks/stream.py                    # 7 days × 150 k ≈ 1 M events
    .venv/bin/python benchmarks/stream.py --days 2 --json    # quicker, machine-readable

1. generates the days and builds bronze with the real asset (not timed);
2. starts a local broker on a free loopback port: Apache Kafka (`--broker kafka`, the default)
   or the embedded one (`--broker embedded`, whose producers send one record per batch);
3. replay, unthrottled: every bronze event to a fresh topic through the replay job's code
   (Spark prepares day N+1 while day N is produced) → events/s;
4. replay, throttled: the first day again at `--rate` events/s to another topic → achieved
   rate and its error against the setting;
5. streaming: the streaming job over the unthrottled topic with Trigger.AvailableNow and the
   default admission limit → events/s from topic to table (wall time of the whole run, and
   the sum of micro-batch times), and micro-batch latency (median, p95);
6. the same week in small micro-batches (`--small-trigger` events each), then the maintenance
   job's compaction and vacuum on the stream's Delta tables → commits, data files before and
   after compaction, files left on disk.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from dagster import DagsterInstance, materialize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from figures import flat, record

from funnelpulse_dagster.defs.lakehouse.bronze import bronze
from funnelpulse_dagster.generator import generate
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.lakehouse.maintenance import maintain_lake
from funnelpulse_dagster.resources import KafkaResource, LakeResource, RawDataResource
from funnelpulse_dagster.resources.spark import SparkResource
from funnelpulse_dagster.runtime.services import free_port
from funnelpulse_dagster.streaming import broker
from funnelpulse_dagster.streaming.job import run_stream
from funnelpulse_dagster.streaming.replay import Pacer, replay, to_messages
from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    STREAM_DEAD_LETTERS,
    STREAM_EVENTS,
    STREAM_GOLD_QUERY,
    STREAM_INGEST_QUERY,
)

COMPACTED_TABLES = (STREAM_EVENTS, STREAM_DEAD_LETTERS, GOLD_STREAM_FUNNEL_HOURLY_BRAND)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", default="2019-10-01")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-day", type=int, default=150_000)
    parser.add_argument("--rate", type=float, default=50_000, help="throttled replay rate, events/s")
    parser.add_argument("--max-events-per-trigger", type=int, default=250_000)
    parser.add_argument(
        "--small-trigger",
        type=int,
        default=10_000,
        help="events per trigger of the run whose small files are then compacted (0: skip it)",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--shuffle-partitions", type=int, default=8, help="also the state stores' partitions")
    parser.add_argument("--broker", choices=broker.BROKER_KINDS, default=broker.KAFKA)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="funnelpulse-stream-bench-"))
    first = date.fromisoformat(args.start)
    days = [first + timedelta(days=i) for i in range(args.days)]
    spark_resource = SparkResource(master="local[2]", shuffle_partitions=args.shuffle_partitions)
    lake = LakeResource(root=str(work / "tables"))
    results: dict[str, object] = {"days": args.days, "broker": args.broker}
    bootstrap = f"127.0.0.1:{free_port()}"
    end_offsets = broker.END_OFFSETS_BY_KIND[args.broker]
    try:
        generate(work / "data_raw", first, args.days, seed=11, events_per_day=args.events_per_day)
        built = materialize(
            [bronze],
            instance=DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat(),
            },
            resources={
                "spark": spark_resource,
                "lake": lake,
                "raw_data": RawDataResource(uri=str(work / "data_raw")),
            },
            raise_on_error=True,
        )
        assert built.success
        spark = spark_resource.spark_session
        events = lake.read(spark, BRONZE_EVENTS).count()
        results["bronze_events"] = events
        broker.start(work, bootstrap, kind=args.broker)

        def load_day(day):
            return to_messages(lake.read(spark, BRONZE_EVENTS, [day])).toArrow()

        # warm the JVM's code paths once so neither replay pays for the first query
        load_day(days[0])

        fast = KafkaResource(
            bootstrap_servers=bootstrap,
            topic="bench-fast",
            topic_partitions=args.partitions,
            end_offsets=end_offsets,
        )
        fast.ensure_topic()
        totals = replay(fast.producer(), fast.topic, days, load_day, Pacer(), log=lambda _: None)
        assert totals.failed == 0 and totals.delivered == events, totals
        results["replay_unthrottled_events_per_s"] = round(totals.events_per_second)
        results["replay_unthrottled_seconds"] = round(totals.seconds, 2)

        slow = KafkaResource(
            bootstrap_servers=bootstrap,
            topic="bench-rate",
            topic_partitions=args.partitions,
            end_offsets=end_offsets,
        )
        slow.ensure_topic()
        paced = replay(
            slow.producer(),
            slow.topic,
            days[:1],
            load_day,
            Pacer(events_per_second=args.rate),
            log=lambda _: None,
        )
        achieved = paced.events_per_second
        results["replay_throttled_set_rate"] = args.rate
        results["replay_throttled_events"] = paced.produced
        results["replay_throttled_achieved_rate"] = round(achieved)
        results["replay_throttled_error_pct"] = round(100 * (achieved - args.rate) / args.rate, 2)

        # producer alone: the same messages prepared in memory first
        prepared = {day: load_day(day) for day in days}
        send = KafkaResource(
            bootstrap_servers=bootstrap,
            topic="bench-send",
            topic_partitions=args.partitions,
            end_offsets=end_offsets,
        )
        send.ensure_topic()
        sent = replay(send.producer(), send.topic, days, prepared.__getitem__, Pacer(), log=lambda _: None)
        assert sent.failed == 0 and sent.delivered == events
        results["replay_send_only_events_per_s"] = round(sent.events_per_second)
        del prepared

        options = fast.spark_stream_source(args.max_events_per_trigger)
        # cold: a run as the sensor starts it in a fresh process (first queries pay JIT warm-up);
        # warm: the same work again in the same session, as a long-running deployment does it
        for phase in ("cold", "warm"):
            lake_phase = Lake(str(work / f"stream_{phase}"))
            started = time.perf_counter()
            stream = run_stream(
                spark,
                options,
                lake_phase,
                str(work / f"checkpoints_{phase}"),
                log=lambda _: None,
            )
            wall = time.perf_counter() - started
            ingest, gold = stream[STREAM_INGEST_QUERY], stream[STREAM_GOLD_QUERY]
            assert ingest.input_rows == gold.input_rows == events, (
                ingest.input_rows,
                gold.input_rows,
                events,
            )
            latencies = sorted(ingest.batch_seconds)
            results[f"stream_{phase}_wall_seconds"] = round(wall, 2)
            results[f"stream_{phase}_events_per_s"] = round(events / wall)
            results[f"stream_{phase}_ingest_seconds"] = round(ingest.seconds, 2)
            results[f"stream_{phase}_gold_seconds"] = round(gold.seconds, 2)
            results[f"stream_{phase}_batch_seconds_median"] = round(latencies[len(latencies) // 2], 2)
            results[f"stream_{phase}_batch_seconds_max"] = round(latencies[-1], 2)
            results[f"stream_{phase}_ingest_batches"] = " ".join(f"{s:.1f}" for s in ingest.batch_seconds)
            results[f"stream_{phase}_gold_batches"] = " ".join(f"{s:.1f}" for s in gold.batch_seconds)
            results[f"stream_{phase}_gold_rows"] = lake_phase.read(
                spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND
            ).count()
            results[f"stream_{phase}_late_rows_dropped"] = gold.late_rows_dropped

        if args.small_trigger:
            # the same week in small micro-batches, as an always-on stream writes it (a commit
            # and a few files per batch), then the maintenance job's work on the stream's tables;
            # retention 0 h so the vacuum's effect shows at once (the job's default is a week)
            small = Lake(str(work / "stream_small"))
            run_stream(
                spark,
                fast.spark_stream_source(args.small_trigger),
                small,
                str(work / "checkpoints_small"),
                log=lambda _: None,
                live=None,
            )
            started = time.perf_counter()
            done = maintain_lake(spark, small, 0, COMPACTED_TABLES)
            results["maintenance_seconds"] = round(time.perf_counter() - started, 2)
            results["small_trigger_events"] = args.small_trigger
            for table in done:
                name = table.table
                results[f"{name}_commits"] = table.version
                results[f"{name}_files_before_compaction"] = table.files_before
                results[f"{name}_files_after_compaction"] = table.files_after
                results[f"{name}_files_on_disk_after_vacuum"] = table.files_on_disk_after
    finally:
        broker.stop(work)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:36} {value:>14,}" if isinstance(value, (int, float)) else f"{key:36} {value}")
    record("stream", [flat(f"replay and topic → table, {args.broker} broker", results)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
