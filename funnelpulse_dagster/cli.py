"""`funnelpulse` command line: sample data and configuration at a glance."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from funnelpulse_dagster.generator import DEFAULT_EVENTS_PER_DAY, generate
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
        ("data_raw", s.data_raw),
    ):
        print(f"{name:28} {value}")
    return 0


def _summary(_: argparse.Namespace) -> int:
    """Rows and day partitions of every table on a local lake (no Spark needed)."""
    import pyarrow.dataset as ds

    from funnelpulse_dagster.tables import ALL_TABLES

    lake = load_settings().lake
    if "://" in lake and not lake.startswith("file://"):
        print(f"summary reads local lakes only; {lake} is remote (use the Dagster UI)")
        return 0
    root = Path(lake.removeprefix("file://"))
    print(f"{'table':32} {'rows':>12} {'days':>6}  first..last")
    for name, table in ALL_TABLES.items():
        path = root / name
        days = sorted(p.name.split("=", 1)[1] for p in path.glob(f"{table.partition_column}=*"))
        if not days:
            print(f"{name:32} {'-':>12} {0:>6}")
            continue
        rows = ds.dataset(path, format="parquet", partitioning="hive").count_rows()
        print(f"{name:32} {rows:>12,} {len(days):>6}  {days[0]}..{days[-1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="funnelpulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write Kaggle-format sample CSVs into data_raw/")
    gen.add_argument("--start", default="2019-10-01", help="first day (UTC), YYYY-MM-DD")
    gen.add_argument("--days", type=int, default=14)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--events-per-day", type=int, default=DEFAULT_EVENTS_PER_DAY)
    gen.add_argument("--anomalies", type=int, default=0, help="funnel anomalies to inject")
    gen.add_argument("--out", help="output folder (default: $FUNNELPULSE_HOME/data_raw)")
    gen.add_argument(
        "--ground-truth", help="CSV of injected anomalies (default: $FUNNELPULSE_HOME/ground_truth/)"
    )
    gen.set_defaults(func=_generate)

    cfg = sub.add_parser("config", help="print the resolved configuration")
    cfg.set_defaults(func=_config)

    summary = sub.add_parser("summary", help="rows and days of every table on the local lake")
    summary.set_defaults(func=_summary)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
