"""Anomaly alerts, end to end: from a planned purchase drop's first event to its alert's arrival at
a webhook, through Kafka, the continuous stream with its live judge, and the alerts sensor.

    .venv/bin/python benchmarks/time_to_detect.py                       # 6 drops, replayed at 120x
    .venv/bin/python benchmarks/time_to_detect.py --speed 60 --json /tmp/ttd.json

1. generates 15 days of a shop with the sample generator at its real daily volume, with
   `--drops` planned purchase drops (−80 %, three hours each) on the last day, on the six
   busiest brands in turn, starting two hours apart from `--first-drop-hour` (the day's busy
   hours: a morning hour holds too few purchases for most drops to be found at all);
2. builds the first 14 days' batch lake (bronze → silver → hourly gold, real Dagster runs): the
   detector's look-back history;
3. starts a local broker, the continuous stream with its live judge (`StreamingResource.run`
   with `live_judge`, as `funnelpulse stream --continuous` runs it, with the resource's
   defaults but the ingest and gold queries on the open state's trigger), the alerts sensor's evaluation every `--alert-interval` seconds (60: the sensor's
   minimum interval, as the Dagster daemon runs it) and a local webhook receiver;
4. produces the last day's events from `--from-hour` in event-time order, paced at `--speed`
   times real time, noting when each event time was reached;
5. for each drop, takes the first opening alert for its brand and type, and lists every alert
   sent: an opening that matches no drop is a false alarm, and a withdrawal says a provisional
   flag was not kept when its hour closed;
6. builds the drop day's hourly gold in batch and gives each drop its *signal*, the z an
   oracle knowing the drop's hours would reach (`scenarios.incidents`): the median time to
   detect is reported over every alerted drop and over the drops within reach (signal ≥ 4),
   the drops any detector could be asked to find; and how many of its hours each drop needs
   before that oracle's signal over them reaches the detector's threshold (`rules.THRESHOLD`):
   how soon the data itself shows a drop, whatever judges it.

Figures per drop:
- *hours to detectable*: from the drop's first event to the incident's earliest
  `detectable_at` in the anomaly table when the replay ends: the end of the hour whose evidence
  first made one of its hours a flag (no hourly judge can flag it before that hour ends);
- *pipeline seconds*: from the moment the producer passed that instant to the alert's arrival
  (micro-batch, open-state publish, the judge's next look and run, the sensor's next tick, the
  post), in wall-clock seconds. At a high `--speed` the judge, which takes tens of seconds a
  run, falls hours of event time behind, so this overstates a real-time feed's;
- *time to detect at real time*: the two added: what a shop producing in real time sees;
- *time to detect at this speed*: the event time reached when the alert arrived, less the
  drop's start. The pipeline's seconds count `--speed` times over in event time, so this
  overstates what a real-time feed sees; it is the figure a replay shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd
from figures import record, table  # benchmarks/figures.py: the performance page

from funnelpulse_dagster.defs.lakehouse.bronze import bronze
from funnelpulse_dagster.defs.lakehouse.gold_hourly import gold_funnel_hourly_brand
from funnelpulse_dagster.defs.lakehouse.silver import silver_events
from funnelpulse_dagster.generator import AnomalySpec, generate
from funnelpulse_dagster.resources import KafkaResource, LakeResource, SparkResource, StreamingResource
from funnelpulse_dagster.resources.alerts import AlertsResource
from funnelpulse_dagster.rules import THRESHOLD
from funnelpulse_dagster.runtime.services import free_port
from funnelpulse_dagster.streaming import broker
from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND, GOLD_FUNNEL_HOURLY_BRAND
from funnelpulse_evaluation.exports import export_messages
from funnelpulse_evaluation.scenarios import (
    DETECTABLE_SIGNAL,
    materialize_days,
    oracle_signal,
    usual_purchase_sessions,
)
from funnelpulse_evaluation.webhook import Receiver

START = date(2019, 10, 1)
HISTORY_DAYS = 14
DROP_RANKS = (0, 1, 2, 3, 4, 5)  # the six busiest brands, each of its own size
DROP_HOURS = 3
DROP_MAGNITUDE = 0.8


def _plan(drops: int, first_hour: int) -> list[AnomalySpec]:
    """`drops` drops on the last day, starting two hours apart, each on a brand of another size."""
    return [
        AnomalySpec(DROP_RANKS[i % len(DROP_RANKS)], HISTORY_DAYS, first_hour + 2 * i, DROP_HOURS, "drop", DROP_MAGNITUDE)
        for i in range(drops)
    ]  # fmt: skip


def _alerts_loop(stop: threading.Event, interval: float, resources: dict, errors: list) -> None:
    """The alerts sensor evaluated every `interval` seconds with its cursor carried over, as the
    Dagster daemon evaluates it."""
    from dagster import DagsterInstance, SensorResult, build_sensor_context

    from funnelpulse_dagster.defs.alerts.sensors import alerts_sensor

    instance, cursor = DagsterInstance.ephemeral(), None
    while not stop.wait(interval):
        try:
            context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            result = alerts_sensor(context)
            if isinstance(result, SensorResult) and result.cursor:
                cursor = result.cursor
        except Exception as exc:  # noqa: BLE001 - reported at the end
            errors.append(repr(exc))


def _event_time_at(clock: list[tuple[float, pd.Timestamp]], wall: float) -> pd.Timestamp:
    """The newest event time the producer had sent at `wall`."""
    reached = [event for at, event in clock if at <= wall]
    return reached[-1] if reached else clock[0][1]


def _wall_at(clock: list[tuple[float, pd.Timestamp]], event_time: pd.Timestamp) -> float | None:
    """When the producer first sent an event at or after `event_time`."""
    return next((at for at, event in clock if event >= event_time), None)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drops", type=int, default=6)
    parser.add_argument("--speed", type=float, default=120.0, help="event seconds produced per wall second")
    parser.add_argument("--from-hour", type=int, default=8, help="the replayed day's first hour")
    parser.add_argument(
        "--first-drop-hour", type=int, default=11, help="the drops start here, two hours apart (busy hours)"
    )
    parser.add_argument(
        "--alert-interval", type=float, default=60.0, help="seconds between sensor evaluations"
    )
    parser.add_argument("--tail-seconds", type=float, default=240.0, help="wait for alerts after the replay")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--work", help="a work folder (kept); a temporary one by default")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="funnelpulse-ttd-"))
    raw = work / "data_raw"
    plan = _plan(args.drops, args.first_drop_hour)
    truth_path = work / "injected.csv"
    generate(raw, START, HISTORY_DAYS + 1, seed=args.seed, anomaly_plan=plan, ground_truth_path=truth_path)
    injected = pd.read_csv(truth_path)
    injected["window_start"] = pd.to_datetime(injected["window_start"]).dt.tz_localize(None)
    print(injected.to_string(index=False))

    spark = SparkResource(master="local[2]", driver_memory="4g", shuffle_partitions=4, mode="in-process")
    lake = LakeResource(root=str(work / "tables"))
    started_build = time.monotonic()
    # bronze → silver → hourly gold of the history days: the detector's look-back
    materialize_days(
        [bronze, silver_events, gold_funnel_hourly_brand],
        START,
        START + timedelta(days=HISTORY_DAYS - 1),
        spark,
        lake,
        raw,
    )
    print(f"history built in {time.monotonic() - started_build:.0f} s")

    bootstrap = f"127.0.0.1:{free_port()}"
    broker.start(work, bootstrap)
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic="ttd", topic_partitions=4)
    kafka.ensure_topic()
    # the ingest and gold queries on the open state's trigger: at the replay's speed the
    # resource's ledger interval (30 s) would be an hour of the day's time between closed hours
    streaming = StreamingResource(
        checkpoint_root=str(work / "checkpoints"),
        ledger_processing_time_seconds=StreamingResource.model_fields["processing_time_seconds"].default,
    )
    session = spark.spark_session
    day = START + timedelta(days=HISTORY_DAYS)
    # the day from --from-hour, and the next day's first minutes so that its last hour ends
    messages = export_messages(
        raw,
        pd.Timestamp(day) + pd.Timedelta(hours=args.from_hour),
        pd.Timestamp(day) + pd.Timedelta(days=1, minutes=10),
    )
    replay_seconds = (messages[-1][0] - messages[0][0]).total_seconds() / args.speed
    print(f"replaying {len(messages):,} events of {day} in {replay_seconds:.0f} s")

    judged: list[str] = []
    stream_errors: list[BaseException] = []

    def stream() -> None:
        try:
            judge = streaming.live_judge(session, lake, judged.append)
            streaming.run(
                session,
                kafka,
                lake,
                continuous=True,
                max_runtime_seconds=replay_seconds + args.tail_seconds + 30,
                log=lambda _: None,
                judge=judge,
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            stream_errors.append(exc)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    time.sleep(20)  # the queries start (JVM classes load) before the clock starts

    receiver = Receiver()
    stop, alert_errors = threading.Event(), []
    resources = {
        "alerts": AlertsResource(webhook_url=receiver.url, format="generic"),
        "lake": lake,
        "kafka": kafka,
        "streaming": streaming,
    }
    alerter = threading.Thread(target=_alerts_loop, args=(stop, args.alert_interval, resources, alert_errors))
    alerter.start()

    producer = kafka.producer(**{"linger.ms": 5})
    clock: list[tuple[float, pd.Timestamp]] = []
    first_event = messages[0][0]
    started = marked = time.time()
    for event_time, value, key in messages:
        due = started + (event_time - first_event).total_seconds() / args.speed
        if (delay := due - time.time()) > 0.02:
            producer.poll(0)
            time.sleep(delay)
        producer.produce(kafka.topic, value=value, key=key)
        if time.time() - marked >= 0.25:  # the event time reached, four times a second
            producer.poll(0)
            marked = time.time()
            clock.append((marked, event_time))
    producer.flush(30)
    clock.append((time.time(), messages[-1][0]))
    print("replay done; waiting for the last alerts")
    deadline = time.time() + args.tail_seconds
    while time.time() < deadline and streamer.is_alive():
        time.sleep(5)
    stop.set()
    alerter.join()
    streamer.join(timeout=120)
    broker.stop(work)
    if stream_errors:
        raise stream_errors[0]

    # each drop's signal (scenarios.incidents' oracle) from the drop day's hourly gold, built
    # in batch after the replay: whether any detector could find it at these volumes
    materialize_days([bronze, silver_events, gold_funnel_hourly_brand], day, day, spark, lake, raw)
    gold = lake.read(session, GOLD_FUNNEL_HOURLY_BRAND).filter("brand IS NOT NULL").toPandas()
    gold["window_start"] = pd.to_datetime(gold["window_start"])
    signals = {}  # by drop ("brand HH:MM", as matched_drop names it): a brand may drop twice
    oracle_hours = {}  # by drop: the hours of it an oracle needs to pass THRESHOLD, None if all fall short
    for drop in injected.itertuples(index=False):
        hours = pd.DataFrame(
            {
                "brand": drop.brand,
                "window_start": [drop.window_start + pd.Timedelta(hours=h) for h in range(drop.hours)],
            }
        )
        observed = hours.merge(gold, on=["brand", "window_start"], how="left")["purchase_sessions"].fillna(0)
        usual = usual_purchase_sessions(gold, hours)
        # the oracle's signal over the drop's first k hours: how soon the data itself shows the
        # drop, not a bound on the detector (whose baseline and trials differ from the oracle's)
        so_far = [
            oracle_signal(float(usual.iloc[:k].sum()), float(observed.iloc[:k].sum()), drop.anomaly_type)
            for k in range(1, drop.hours + 1)
        ]
        label = f"{drop.brand} {drop.window_start:%H:%M}"
        signals[label] = so_far[-1]
        oracle_hours[label] = next((k for k, s in enumerate(so_far, 1) if s >= THRESHOLD), None)

    def matched_drop(body: dict) -> str:
        """The planned drop an alert is about: its type and brand, its hours within an hour of
        the drop's; "none" for a false alarm."""
        first, last = (pd.Timestamp(body[k].rstrip("Z")) for k in ("first_hour", "last_hour"))
        for drop in injected.itertuples(index=False):
            end = drop.window_start + pd.Timedelta(hours=drop.hours)
            if (
                (body.get("kind"), body.get("brand")) == (drop.anomaly_type, drop.brand)
                and first < end + pd.Timedelta(hours=1)
                and last >= drop.window_start - pd.Timedelta(hours=1)
            ):
                return f"{drop.brand} {drop.window_start:%H:%M}"
        return "none"

    rows, at_real_time, at_speed, within_reach = [], [], [], []
    openings = sorted(
        (
            (at, body)
            for at, _, body in receiver.arrivals
            if body.get("status") == "open" and "first_hour" in body
        ),
        key=lambda opening: opening[0],
    )
    # the verdicts as the replay left them: when each flag's evidence was complete
    verdicts = lake.plain.delta_table(GOLD_ANOMALIES_HOURLY_BRAND).to_pandas()
    for column in ("window_start", "detectable_at"):
        verdicts[column] = pd.to_datetime(verdicts[column]).dt.tz_localize(None)
    for drop in injected.itertuples(index=False):
        start = drop.window_start
        label = f"{drop.brand} {start:%H:%M}"
        alert = next(((at, body) for at, body in openings if matched_drop(body) == label), None)
        signal = signals[label]
        oracle = oracle_hours[label] or "–"
        reach = signal >= DETECTABLE_SIGNAL
        if alert is None:
            rows.append(
                [drop.brand, f"{start:%H:%M}", round(signal, 1), oracle, "no alert", "–", "–", "–", "–"]
            )
            continue
        at, body = alert
        flags = verdicts[
            (verdicts["brand"] == drop.brand)
            & (verdicts["anomaly_type"] == drop.anomaly_type)
            & verdicts["window_start"].between(
                start - pd.Timedelta(hours=1), start + pd.Timedelta(hours=drop.hours)
            )
        ]
        # a provisional flag the final verdict dropped: its own hour's end
        detectable = (
            flags["detectable_at"].min()
            if len(flags)
            else pd.Timestamp(body["first_hour"].rstrip("Z")) + pd.Timedelta(hours=1)
        )
        hours_to_flag = (detectable - start).total_seconds() / 3600
        passed = _wall_at(clock, detectable)
        pipeline = at - passed if passed is not None else None
        real_time = hours_to_flag + (pipeline or 0) / 3600
        speed_hours = (_event_time_at(clock, at) - start).total_seconds() / 3600
        at_real_time.append(real_time)
        at_speed.append(speed_hours)
        if reach:
            within_reach.append(real_time)
        rows.append(
            [
                drop.brand,
                f"{start:%H:%M}",
                round(signal, 1),
                oracle,
                f"{body['first_hour'][11:16]} ({body['source']})",
                round(hours_to_flag, 2),
                round(pipeline, 1) if pipeline is not None else "–",
                round(real_time, 2),
                round(speed_hours, 2),
            ]
        )

    def spread(values: list[float]) -> list:
        if not values:
            return ["–", "–"]
        ordered = sorted(values)
        return [
            round(statistics.median(ordered), 2),
            round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        ]

    every_alert = [
        [
            f"{_event_time_at(clock, at):%H:%M}",
            body.get("status", "–"),
            body.get("kind", "–"),
            body.get("brand") or "–",
            f"{body['first_hour'][11:16]}–{body['last_hour'][11:16]}" if "first_hour" in body else "–",
            body.get("source", "–"),
            matched_drop(body) if "first_hour" in body else "–",
        ]
        for at, _, body in sorted(receiver.arrivals, key=lambda a: a[0])
    ]
    false_openings = sum(1 for row in every_alert if row[1] == "open" and row[6] == "none")
    summary = [
        ["drops", len(injected)],
        ["alerted", len(at_real_time)],
        [
            f"within reach (signal ≥ {DETECTABLE_SIGNAL:g})",
            sum(s >= DETECTABLE_SIGNAL for s in signals.values()),
        ],
        ["alerted within reach", len(within_reach)],
        [
            f"drops whose first hour alone reaches an oracle signal of {THRESHOLD:g}",
            sum(k == 1 for k in oracle_hours.values()),
        ],
        [
            "time to detect within reach at real time, median / p90 (hours)",
            " / ".join(map(str, spread(within_reach))),
        ],
        ["openings that match no drop", false_openings],
        ["withdrawals", sum(1 for row in every_alert if row[1] == "withdrawn")],
        ["time to detect at real time, median / p90 (hours)", " / ".join(map(str, spread(at_real_time)))],
        [f"time to detect at {args.speed:g}x, median / p90 (hours)", " / ".join(map(str, spread(at_speed)))],
        ["alerts sent (every status)", len(receiver.posts)],
        ["live judge runs", len(judged)],
        ["sensor evaluation errors", len(alert_errors)],
    ]
    tables = [
        table(
            "Each planned drop and its first alert",
            [
                "brand",
                "drop starts",
                "signal",
                f"oracle's hours to {THRESHOLD:g}",
                "alert's first hour (source)",
                "hours to detectable",
                "pipeline seconds",
                "at real time (hours)",
                f"at {args.speed:g}x (hours)",
            ],
            rows,
        ),
        table("Summary", ["figure", "value"], summary),
        table(
            "Every alert sent, in order",
            ["stream's event time", "status", "kind", "brand", "hours", "source", "planned drop"],
            every_alert,
        ),
    ]
    for t in tables:
        print(t["title"])
        for row in t["rows"]:
            print("  ", " | ".join(row))
    if alert_errors:
        print("sensor errors:", alert_errors[:3])
    if args.json:
        Path(args.json).write_text(json.dumps({"tables": tables, "judged": judged}, indent=2))
    record("time_to_detect", tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
