"""`funnelpulse` command line: sample data, the local Kafka broker, the streaming job outside
Dagster, and the configuration and tables at a glance."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from funnelpulse_dagster.generator import DEFAULT_EVENTS_PER_DAY, generate, purchase_change
from funnelpulse_dagster.settings import load_settings


def _generate(args: argparse.Namespace) -> int:
    settings = load_settings()
    out = Path(args.out) if args.out else settings.data_raw
    truth = Path(args.ground_truth) if args.ground_truth else settings.ground_truth / "injected_anomalies.csv"
    summary = generate(
        out,
        date.fromisoformat(args.start),
        args.days,
        seed=args.seed,
        events_per_day=args.events_per_day,
        anomalies=args.anomalies,
        visible_anomalies=args.visible_anomalies,
        ground_truth_path=truth,
    )
    print(f"wrote {summary.rows:,} rows to {', '.join(summary.files)}")
    print(f"malformed lines: {summary.malformed}")
    print(f"injected anomalies: {len(summary.anomalies)} (ground truth: {truth})")
    return 0


def _config(_: argparse.Namespace) -> int:
    s = load_settings()
    for name, value in (
        ("FUNNELPULSE_HOME", s.home),
        ("FUNNELPULSE_LAKE", s.lake),
        ("FUNNELPULSE_START_DATE", s.start_date),
        ("FUNNELPULSE_KAFKA_BOOTSTRAP", s.kafka_bootstrap),
        ("FUNNELPULSE_KAFKA_TOPIC", s.kafka_topic),
        ("FUNNELPULSE_SPARK_MASTER", s.spark_master),
        ("FUNNELPULSE_SPARK_REMOTE", s.spark_remote or "(none: FUNNELPULSE_SPARK_MODE decides)"),
        ("FUNNELPULSE_SPARK_MODE", s.spark_mode),
        ("FUNNELPULSE_SPARK_IDLE_MINUTES", s.spark_idle_minutes),
        ("checkpoints", s.checkpoints),
        ("raw (FUNNELPULSE_RAW)", s.raw),
    ):
        print(f"{name:28} {value}")
    return 0


def as_of_argument(text: str | None) -> int | datetime | None:
    """`--as-of`: a version number, or an ISO time (UTC when it names no offset)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SystemExit(
            f"--as-of {text!r}: give a version number or an ISO time such as 2019-10-03T12:00"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(args: argparse.Namespace) -> int:
    """Version, rows and partitions of every table on the lake, local or `gs://`, now or as of a
    time (no Spark needed: the Delta log's file statistics, read with delta-rs)."""
    from funnelpulse_dagster.lakehouse.lake import Lake
    from funnelpulse_dagster.tables import LAKE_TABLES

    lake = Lake(load_settings().lake)
    as_of = as_of_argument(args.as_of)
    if isinstance(as_of, int):
        raise SystemExit("summary --as-of takes a time (versions are per table: funnelpulse history TABLE)")
    print(f"{'table':32} {'version':>8} {'rows':>12} {'parts':>6}  first..last")
    for name, table in LAKE_TABLES.items():
        if not lake.is_table(table):
            print(f"{name:32} {'-':>8} {'-':>12} {0:>6}")
            continue
        try:
            version = lake.delta_table(table, as_of).version()
        except Exception:  # noqa: BLE001 - deltalake raises a generic error for a time before the table
            print(f"{name:32} {'-':>8} {'(none then)':>12} {0:>6}")
            continue
        rows = lake.rows_by_partition(table, version)
        # batch ids sort as numbers, dates as text
        parts = sorted(rows, key=lambda v: (len(v), v) if v.isdigit() else (0, v))
        span = f"{parts[0]}..{parts[-1]}" if parts else ""
        print(f"{name:32} {version:>8} {sum(rows.values()):>12,} {len(parts):>6}  {span}")
    return 0


def _history(args: argparse.Namespace) -> int:
    """A table's versions, newest first: when, the operation, what it changed, and the run."""
    from funnelpulse_dagster.lakehouse.lake import Lake
    from funnelpulse_dagster.tables import LAKE_TABLES

    if args.table not in LAKE_TABLES:
        raise SystemExit(f"no table {args.table!r}; tables: {', '.join(LAKE_TABLES)}")
    table = LAKE_TABLES[args.table]
    lake = Lake(load_settings().lake)
    as_of = as_of_argument(args.as_of)
    if as_of is not None:
        version = lake.delta_table(table, as_of).version()
        rows = lake.rows_by_partition(table, version)
        print(f"{table.name} as of {args.as_of}: version {version}, {sum(rows.values()):,} rows")
        for value in sorted(rows):
            print(f"  {table.partition_column}={value}: {rows[value]:,}")
        return 0
    print(f"{'version':>7}  {'committed (UTC)':19}  {'operation':14} {'rows added':>10} {'removed':>8}  run")
    for snap in lake.snapshots(table, args.limit):
        added = snap.metrics.get("numOutputRows", snap.metrics.get("num_added_rows", ""))
        removed = snap.metrics.get("numDeletedRows", snap.metrics.get("num_removed_rows", ""))
        stamp = snap.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if snap.timestamp else ""
        print(
            f"{snap.version:>7}  {stamp:19}  {snap.operation:14} {added!s:>10} {removed!s:>8}  {snap.tag or ''}"
        )
    return 0


def _broker(args: argparse.Namespace) -> int:
    from funnelpulse_dagster.resources import build_resources, kafka_resource
    from funnelpulse_dagster.streaming import broker
    from funnelpulse_dagster.streaming.offsets import KafkaUnavailable

    settings = load_settings()
    kafka = kafka_resource(resolved=True)
    if args.partitions:
        kafka = kafka.model_copy(update={"topic_partitions": args.partitions})
    try:
        if args.action == "start":
            pid = broker.start(settings.home, settings.kafka_bootstrap, kind=settings.broker)
            created = kafka.ensure_topic()
            print(
                f"{broker.running_kind(settings.home)} broker running (pid {pid}) on {settings.kafka_bootstrap}; "
                f"log {broker.broker_files(settings.home).log_file}"
            )
            print(
                f"topic {kafka.topic}: {'created with ' + str(kafka.topic_partitions) + ' partitions' if created else 'exists'}"
            )
            return 0
        if args.action == "stop":
            print("broker stopped" if broker.stop(settings.home) else "no broker was running")
            return 0
    except broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pid = broker.running_pid(settings.home)
    kind = broker.running_kind(settings.home)
    print(f"local broker: {f'{kind}, running, pid {pid}' if pid else 'not running'}")
    try:
        ends = kafka.end_offsets_now(timeout=5)
    except KafkaUnavailable as exc:
        print(f"{kafka.bootstrap_servers}: {exc}")
        return 1 if pid else 3
    committed = build_resources(resolved=True)["streaming"].committed_offsets(kafka.topic) or {}
    print(f"topic {kafka.topic} on {kafka.bootstrap_servers}")
    print(f"{'partition':>9} {'end offset':>12} {'processed':>12} {'backlog':>10}")
    for p, end in sorted(ends.items()):
        done = committed.get(p, 0)
        print(f"{p:>9} {end:>12,} {done:>12,} {end - done:>10,}")
    return 0


def _spark(args: argparse.Namespace) -> int:
    """This home's local Spark Connect servers: start | stop | status."""
    from funnelpulse_dagster.resources import build_resources
    from funnelpulse_dagster.runtime import spark_server
    from funnelpulse_dagster.runtime.services import ServiceError

    settings = load_settings()
    if args.action == "start":
        spark = build_resources(resolved=True)["spark"]
        idle = settings.spark_idle_minutes if args.idle_minutes is None else args.idle_minutes
        try:
            server = spark_server.start(
                settings.home, port=args.port, conf=spark.session_conf(), idle_minutes=idle
            )
        except ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"Spark Connect server running (pid {server.pid}) at {server.url}; log {server.files.log_file}")
        print(
            f"this home's runs, CLI commands and `dagster dev` use it; from elsewhere: FUNNELPULSE_SPARK_REMOTE={server.url}"
        )
        if settings.spark_remote or settings.spark_mode != "local-server":
            print(
                f"note: this shell's runs do not (FUNNELPULSE_SPARK_REMOTE={settings.spark_remote or '(unset)'}, "
                f"FUNNELPULSE_SPARK_MODE={settings.spark_mode})"
            )
        return 0
    if args.action == "stop":
        stopped = spark_server.stop(settings.home)
        print(
            f"stopped {stopped} Spark Connect server(s)" if stopped else "no Spark Connect server was running"
        )
        return 0
    running = spark_server.running(settings.home)
    if settings.spark_remote:
        print(f"runs use the Spark Connect endpoint FUNNELPULSE_SPARK_REMOTE={settings.spark_remote}")
    elif settings.spark_mode == "in-process":
        print("runs start Spark in their own process (FUNNELPULSE_SPARK_MODE=in-process)")
    else:
        print(
            f"runs use this home's local Spark Connect server, started on first use; idle stop after {settings.spark_idle_minutes:g} min"
        )
    if not running:
        print("local Spark Connect servers: none running")
    for server in running:
        conf = server.settings
        print(
            f"local Spark Connect server: running, pid {server.pid} at {server.url}; master {conf.get('spark.master')}, "
            f"driver memory {conf.get('spark.driver.memory')}; log {server.files.log_file}"
        )
    return 0 if running else 3


def _stream(args: argparse.Namespace) -> int:
    """The streaming job without Dagster, for always-on deployments and for operators."""
    from funnelpulse_dagster.resources import build_resources

    resources = build_resources(resolved=True)
    streaming, session = resources["streaming"], resources["spark"].spark_session
    judge = None if args.no_judge else streaming.live_judge(session, resources["lake"])
    totals = streaming.run(
        session,
        resources["kafka"],
        resources["lake"],
        continuous=args.continuous,
        max_runtime_seconds=args.max_runtime,
        max_events_per_trigger=args.max_events_per_trigger,
        judge=judge,
    )
    if judge is not None:
        judge.finish()
    for name, total in totals.items():
        print(name, json.dumps(total.as_metadata(), sort_keys=True))
    return 0


def _anomalies(args: argparse.Namespace) -> int:
    """Each injected anomaly with the hours the detector flagged inside it, and the flags that
    match no injection: what a demo user checks first."""
    import csv

    from funnelpulse_dagster.serving.store import LakeStore
    from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND

    settings = load_settings()
    truth = Path(args.ground_truth) if args.ground_truth else settings.ground_truth / "injected_anomalies.csv"
    injected = list(csv.DictReader(truth.open())) if truth.exists() else []
    store = LakeStore(settings.lake, mode="parquet", tables=[GOLD_ANOMALIES_HOURLY_BRAND])
    store.refresh()
    # an hour flagged by both judges (the batch detector and the live one) counts once
    flagged = (
        store.cursor()
        .execute(
            "SELECT brand, window_start, anomaly_type, max(score) AS score FROM gold_anomalies_hourly_brand "
            "GROUP BY brand, window_start, anomaly_type ORDER BY window_start, brand"
        )
        .fetchall()
    )
    store.close()
    matched: set[int] = set()
    print(f"{'injected (ground truth)':58} {'flagged hours':>13}")
    found_all = {"drop": 0, "spike": 0}
    for a in injected:
        start = datetime.fromisoformat(a["window_start"].replace("Z", "")).replace(tzinfo=None)
        end = start + timedelta(hours=int(a["hours"]))
        hits = [
            i for i, (brand, hour, kind, _) in enumerate(flagged)
            if brand == a["brand"] and kind == a["anomaly_type"] and start <= hour < end
        ]  # fmt: skip
        matched.update(hits)
        found_all[a["anomaly_type"]] += bool(hits)
        label = (
            f"{a['anomaly_type']:5} {a['brand']:12} {start:%Y-%m-%d %H:00} {a['hours']:>2} h, "
            f"purchases {purchase_change(a['anomaly_type'], a['magnitude'])}"
        )
        print(f"{label:58} {len(hits):>6} of {a['hours']}")
    others = [f for i, f in enumerate(flagged) if i not in matched]
    drops = sum(a["anomaly_type"] == "drop" for a in injected)
    spikes = len(injected) - drops
    print(
        f"found {found_all['drop']} of {drops} injected drops and {found_all['spike']} of {spikes} spikes; "
        f"{len(others)} flagged hour(s) match no injection"
    )
    for brand, hour, kind, score in others[:10]:
        print(f"  not injected: {kind:5} {brand} {hour:%Y-%m-%d %H:00} (score {score:.1f})")
    return 0


def _launch(args: argparse.Namespace) -> int:
    """One run of a named job, executed here, placed by the UI (lib/runs.py says how)."""
    from funnelpulse_dagster.lib.partitions import partition_range_tags
    from funnelpulse_dagster.lib.runs import launch_in_process

    tags: dict[str, str] = {}
    if args.partition_range:
        start, sep, end = args.partition_range.partition("...")
        if not sep or not start or not end:
            raise SystemExit(f"--partition-range {args.partition_range!r}: expected <first>...<last>")
        tags = partition_range_tags(start, end)
    run_config = json.loads(args.config_json) if args.config_json else None
    return 0 if launch_in_process(args.job, run_config=run_config, tags=tags) else 1


def _lake(args: argparse.Namespace) -> int:
    """`lake rebuild`: a lake of plain Parquet tables (an older FunnelPulse) is moved aside and
    the batch chain rebuilds every table as Delta from the landing files, in one run."""
    from funnelpulse_dagster.lakehouse import lakefs
    from funnelpulse_dagster.lib.partitions import partition_range_tags
    from funnelpulse_dagster.lib.runs import launch_in_process

    settings = load_settings()
    if not lakefs.is_local(settings.lake):
        raise SystemExit(
            f"FUNNELPULSE_LAKE={settings.lake} is not on this disk: point it at a new prefix and run "
            "`funnelpulse lake rebuild` again (the old prefix stays as it is)"
        )
    first = date.fromisoformat(args.first) if args.first else settings.start_date
    last = (
        date.fromisoformat(args.last)
        if args.last
        else (settings.end_date or date.today() - timedelta(days=1))
    )
    lake = Path(lakefs.local_path(settings.lake))
    if lake.exists() and any(lake.iterdir()):
        aside = lake.with_name(f"{lake.name}.before-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        lake.rename(aside)
        print(f"the old lake is kept at {aside} (delete it once the new one serves)")
    print(f"rebuilding every batch table as Delta, {first}..{last}, from {settings.raw}")
    tags = partition_range_tags(first.isoformat(), last.isoformat())
    return 0 if launch_in_process("batch_lakehouse_job", tags=tags) else 1


def _rules(args: argparse.Namespace) -> int:
    """The asset checks and the funnel rates as stated in rules.py, as Markdown tables: what
    docs/data-quality.md and docs/tables.md show (a test holds the docs to it)."""
    from funnelpulse_dagster import rules

    print(rules.checks_markdown())
    print()
    print(rules.rates_markdown())
    return 0


def _serve(args: argparse.Namespace) -> int:
    """The JSON API and the dashboard over the lake's gold tables. On loopback by default;
    anywhere else only with an access token, or when told that an authenticating proxy (IAP,
    Cloud Run IAM) stands in front of it."""
    import ipaddress
    import os

    import uvicorn

    from funnelpulse_dagster.serving.app import create_app
    from funnelpulse_dagster.serving.store import LakeStore
    from funnelpulse_dagster.settings import ENV_SERVE_TOKEN

    token = os.environ.get(ENV_SERVE_TOKEN, "").strip() or None
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and token is None and not args.behind_auth_proxy:
        print(
            f"refusing to serve on {args.host}: beyond loopback the service needs an access token "
            f"({ENV_SERVE_TOKEN}, sent as `Authorization: Bearer …`), or --behind-auth-proxy when "
            "an authenticating proxy (IAP, Cloud Run IAM) admits every request (docs/serving.md)",
            file=sys.stderr,
        )
        return 2
    settings = load_settings()
    replica = args.replica or str(settings.home / "serving" / "replica.duckdb")
    store = LakeStore(settings.lake, mode=args.mode, database=replica, memory_limit=args.memory_limit)
    guard = "access token required" if token else "no access token"
    print(
        f"serving {settings.lake} ({args.mode}) on http://{args.host}:{args.port}/ ({guard}; API docs: /docs)"
    )
    uvicorn.run(
        create_app(store, refresh_seconds=args.refresh_seconds, access_token=token),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `funnelpulse` command and its subcommands (the README's command list is held to it)."""
    parser = argparse.ArgumentParser(prog="funnelpulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write Kaggle-format sample CSVs into data_raw/")
    gen.add_argument("--start", default="2019-10-01", help="first day (UTC), YYYY-MM-DD")
    gen.add_argument("--days", type=int, default=14)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--events-per-day", type=int, default=DEFAULT_EVENTS_PER_DAY)
    gen.add_argument("--anomalies", type=int, default=0, help="funnel anomalies to inject")
    gen.add_argument(
        "--visible-anomalies",
        action="store_true",
        help="place the anomalies where the data makes them detectable (the demo): drops and spikes "
        "in turn on the three busiest brands, in busy hours, one a day from the eighth day",
    )
    gen.add_argument("--out", help="output folder (default: $FUNNELPULSE_HOME/data_raw)")
    gen.add_argument(
        "--ground-truth", help="CSV of injected anomalies (default: $FUNNELPULSE_HOME/ground_truth/)"
    )
    gen.set_defaults(func=_generate)

    cfg = sub.add_parser("config", help="print the resolved configuration")
    cfg.set_defaults(func=_config)

    found = sub.add_parser(
        "anomalies", help="injected anomalies (the generator's ground truth) beside what the detector flagged"
    )
    found.add_argument(
        "--ground-truth", help="default: $FUNNELPULSE_HOME/ground_truth/injected_anomalies.csv"
    )
    found.set_defaults(func=_anomalies)

    launch = sub.add_parser(
        "launch",
        help="run a named job here, on the instance DAGSTER_HOME names, as a run the UI places "
        "(code location, timeline)",
    )
    launch.add_argument("--job", required=True)
    launch.add_argument("--partition-range", help="<first>...<last> daily partitions, as one run")
    launch.add_argument("--config-json", help="run config as JSON")
    launch.set_defaults(func=_launch)

    lake_cmd = sub.add_parser(
        "lake", help="rebuild: move a lake aside and rebuild its batch tables from the landing files"
    )
    lake_cmd.add_argument("action", choices=("rebuild",))
    lake_cmd.add_argument("--from", dest="first", help="first day (default: FUNNELPULSE_START_DATE)")
    lake_cmd.add_argument(
        "--to", dest="last", help="last day (default: FUNNELPULSE_END_DATE, else yesterday)"
    )
    lake_cmd.set_defaults(func=_lake)

    rules_cmd = sub.add_parser("rules", help="print the data-quality rules and rates (the docs' tables)")
    rules_cmd.set_defaults(func=_rules)

    summary = sub.add_parser("summary", help="version, rows and days of every table on the lake")
    summary.add_argument("--as-of", help="an ISO time: every table as it was then")
    summary.set_defaults(func=_summary)

    history = sub.add_parser("history", help="a table's versions (Delta snapshots), or its rows as of one")
    history.add_argument("table")
    history.add_argument("--as-of", help="a version number or an ISO time: that version's rows per partition")
    history.add_argument("--limit", type=int, default=20, help="newest versions to list")
    history.set_defaults(func=_history)

    brk = sub.add_parser(
        "broker", help="the local Kafka broker, of the kind FUNNELPULSE_BROKER names (start | stop | status)"
    )
    brk.add_argument("action", choices=("start", "stop", "status"))
    brk.add_argument(
        "--partitions", type=int, help="partitions of the topic when start creates it (default 4)"
    )
    brk.set_defaults(func=_broker)

    spk = sub.add_parser(
        "spark",
        help="this home's warm local Spark Connect server, which runs start on first use (start | stop | status)",
    )
    spk.add_argument("action", choices=("start", "stop", "status"))
    spk.add_argument("--port", type=int, help="the port to listen on (default: a free one)")
    spk.add_argument(
        "--idle-minutes",
        type=float,
        help="stop after this long without a job, a query or a client call (0: never; "
        "default FUNNELPULSE_SPARK_IDLE_MINUTES or 30)",
    )
    spk.set_defaults(func=_spark)

    stream = sub.add_parser("stream", help="run the streaming job outside Dagster")
    stream.add_argument("--continuous", action="store_true", help="keep running (processing-time trigger)")
    stream.add_argument("--max-runtime", type=float, help="stop a continuous run after this many seconds")
    stream.add_argument(
        "--no-judge",
        action="store_true",
        help="leave the live hours unjudged (by default each hour is judged for anomalies when it ends, and again when it closes)",
    )
    stream.add_argument("--max-events-per-trigger", type=int)
    stream.set_defaults(func=_stream)

    serve = sub.add_parser("serve", help="the JSON API and the dashboard over the gold tables")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default loopback; any other needs FUNNELPULSE_SERVE_TOKEN or --behind-auth-proxy)",
    )
    serve.add_argument(
        "--behind-auth-proxy",
        action="store_true",
        help="serve beyond loopback without a token: an authenticating proxy admits every request",
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--mode",
        choices=("replica", "parquet"),
        default="replica",
        help="replica: a DuckDB copy refreshed by partition (fast); parquet: query the files in place",
    )
    serve.add_argument(
        "--replica", help="replica database file (default: $FUNNELPULSE_HOME/serving/replica.duckdb)"
    )
    serve.add_argument(
        "--refresh-seconds", type=float, default=5.0, help="how often to look for new partitions"
    )
    serve.add_argument("--memory-limit", default="1GB", help="DuckDB memory limit")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=_serve)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
