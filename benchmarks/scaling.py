"""Scaling benchmark: one cold backfill of one month to two years, Dagster + Spark against DuckDB.

    .venv/bin/python benchmarks/scaling.py                       # 1, 5, 12 and 24 months
    .venv/bin/python benchmarks/scaling.py --months 1,5 --events-per-day 50000   # quicker
    .venv/bin/python benchmarks/scaling.py --home /data/fp-scaling   # keep the exports for a rerun
    .venv/bin/python benchmarks/scaling.py --home /data/fp-scaling --resume   # measure only the points not recorded yet

1. generates the months with the sample generator, one monthly export at a time from
   `--start` (≈ `--events-per-day` events a day; each month its own seed, so the catalogue
   changes from month to month as a shop's does; a month already in the folder is kept);
2. for each point (the first N months' exports in a landing folder of their own), runs the
   whole batch chain (bronze → silver → the four gold tables and the ordered funnel, every check)
   as one cold backfill from the CLI, in-process with the default laptop profile
   (`dagster asset materialize … --partition-range FIRST...LAST`, as `benchmarks/batch.py` runs
   it), and times it with its peak memory (PSS of the process tree);
3. runs DuckDB's lean chain on the same exports in a fresh process (`benchmarks/batch.py`'s
   reference: CSV → bronze Parquet → silver with the same rules → the four gold tables and the
   ordered funnel, no checks), with its peak memory; a DuckDB run that fails (out of memory, or
   out of disk for what it spills beyond its memory limit) is reported as such;
4. reports, per point, both wall times, seconds per day, peak memory and the ratio, plots time
   and memory against days, and says where each curve is headed: the seconds each side adds per
   further day between the last two points, and where the two time curves would cross.

Each point starts from an empty lake: no state carries from one point to the next.

Why the curves bend as they do. FunnelPulse pays a fixed cost a run (the JVM, Dagster, five
steps of Spark jobs and the checks' jobs) that a longer backfill spreads over more days, so its
time per day falls at first; past a year it rises again, in the gold steps, which grow faster
than the data (the table gives each step's time). Its memory is bounded by the driver's heap
(Spark streams each stage's partitions and spills what does not fit), so its peak levels off. DuckDB's lean chain has almost
no fixed cost, and holds the silver de-duplication's window and the distinct counts of whole
tables in memory, up to its limit (80 % of the machine's memory by default), beyond which it
spills to disk or fails.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from batch import _steps, materialize_cmd, run_duckdb, run_measured  # benchmarks/batch.py
from figures import RESULTS, record
from figures import table as figures_table

REPO = Path(__file__).resolve().parents[1]


def month_starts(start: date, months: int) -> list[date]:
    firsts, current = [], start.replace(day=1)
    for _ in range(months):
        firsts.append(current)
        current = (current + timedelta(days=32)).replace(day=1)
    return firsts


def generate_months(raw: Path, start: date, months: int, events_per_day: int) -> list[tuple[Path, int, int]]:
    """One export per month in `raw` (kept when already there): [(file, days, rows)]."""
    sys.path.insert(0, str(REPO))
    from funnelpulse_dagster.generator import generate

    raw.mkdir(parents=True, exist_ok=True)
    exports = []
    for index, first in enumerate(month_starts(start, months)):
        days = calendar.monthrange(first.year, first.month)[1]
        path = raw / f"{first.year}-{calendar.month_abbr[first.month]}.csv"
        rows_file = path.with_suffix(".rows")
        if not (path.exists() and rows_file.exists()):
            with tempfile.TemporaryDirectory(dir=raw) as tmp:
                started = time.perf_counter()
                summary = generate(Path(tmp), first, days, seed=1000 + index, events_per_day=events_per_day)
                (only,) = summary.files
                os.replace(only, path)
                rows_file.write_text(str(summary.rows))
                print(
                    f"generated {path.name}: {summary.rows:,} rows in {time.perf_counter() - started:.0f}s",
                    flush=True,
                )
        exports.append((path, days, int(rows_file.read_text())))
    return exports


def _memory_slopes(days: list[int], spark: list[float], duck: list[float]) -> str:
    """What each side's peak memory adds per further day between the last two points."""
    if len(days) < 2 or len(duck) != len(days):
        return ""
    span = days[-1] - days[-2]
    return (
        f"Peak memory between {days[-2]} and {days[-1]} days: FunnelPulse "
        f"{(spark[-1] - spark[-2]) / span * 1000:+.1f} MB and DuckDB {(duck[-1] - duck[-2]) / span * 1000:+.1f} MB "
        "per further day."
    )


def _crossing(spark: list[tuple[int, float]], duck: list[tuple[int, float]]) -> str:
    """Where the two time curves would cross, extended as straight lines through their last two
    points (each side's cost per further day)."""
    (d0, s0), (d1, s1) = spark[-2:]
    (_, k0), (_, k1) = duck[-2:]
    spark_slope, duck_slope = (s1 - s0) / (d1 - d0), (k1 - k0) / (d1 - d0)
    text = (
        f"Between {d0} and {d1} days, each further day costs FunnelPulse {spark_slope:.2f} s and DuckDB "
        f"{duck_slope:.2f} s."
    )
    if s1 <= k1:
        return text + f" FunnelPulse is already the faster at {d1} days."
    if spark_slope >= duck_slope:
        return text + " At these slopes the curves do not meet: the gap widens or stays."
    cross = d1 + (s1 - k1) / (duck_slope - spark_slope)
    return text + f" Extended at these slopes, the curves cross near {cross:,.0f} days."


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", default="2019-10-01")
    parser.add_argument("--months", default="1,5,12,24", help="the points: how many months each backfills")
    parser.add_argument("--events-per-day", type=int, default=150_000)
    parser.add_argument("--home", help="a folder for the exports and lakes (default: a temporary one)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the points the last recorded run measured and measure only the others (same --home)",
    )
    args = parser.parse_args()
    points = sorted({int(m) for m in args.months.split(",")})
    start = date.fromisoformat(args.start)
    home = Path(args.home or tempfile.mkdtemp(prefix="funnelpulse-scaling-"))
    exports = generate_months(home / "exports", start, points[-1], args.events_per_day)

    rows_out, spark_times, duck_times, spark_memory, duck_memory = [], [], [], [], []
    earlier: list[str] = []
    if args.resume and (RESULTS / "scaling.json").exists():
        recorded = json.loads((RESULTS / "scaling.json").read_text())
        for row in recorded["tables"][0]["rows"]:
            rows_out.append(row)
            spark_times.append((int(row[0]), float(row[3])))
            spark_memory.append(float(row[5]))
            if not row[6].startswith("did not finish"):
                duck_times.append((int(row[0]), float(row[6])))
                duck_memory.append(float(row[8]))
        earlier = [row[0] for row in rows_out]
        # a page rendered again by a resumed run names the run that measured the points
        earlier_note = next(
            (n for n in recorded["notes"] if n.startswith("The points of")),
            f"The points of {', '.join(earlier)} days were measured by `{recorded['command']}` at "
            f"{recorded['measured_at']}.",
        )
    for months in points:
        chosen = exports[:months]
        days = sum(d for _, d, _ in chosen)
        if str(days) in earlier:
            continue
        events = sum(r for _, _, r in chosen)
        csv_gb = sum(p.stat().st_size for p, _, _ in chosen) / 1e9
        raw = home / f"raw_{months}m"
        shutil.rmtree(raw, ignore_errors=True)
        raw.mkdir()
        for path, _, _ in chosen:
            (raw / path.name).symlink_to(path)
        spark_home = home / f"spark_{months}m"
        shutil.rmtree(spark_home, ignore_errors=True)
        (spark_home / "dagster").mkdir(parents=True)
        shutil.copy(REPO / "dagster.yaml", spark_home / "dagster" / "dagster.yaml")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FUNNELPULSE_")},
            "FUNNELPULSE_HOME": str(spark_home),
            "DAGSTER_HOME": str(spark_home / "dagster"),
            "FUNNELPULSE_RAW": str(raw),
            "FUNNELPULSE_SPARK_MODE": "in-process",
        }
        last = start + timedelta(days=days - 1)
        print(f"{months} month(s): {days} days, {events:,} events, {csv_gb:.1f} GB of CSV", flush=True)
        wall, peak, output = run_measured(materialize_cmd("--partition-range", f"{start}...{last}"), env)
        steps = _steps(output)
        shutil.rmtree(spark_home, ignore_errors=True)
        print(f"  FunnelPulse {wall:.1f}s, peak {peak / 1e9:.1f} GB; steps {steps}", flush=True)
        try:
            duck = run_duckdb(raw, home / "duckdb_tables", start, env)
            duck_wall, duck_peak = duck["wall_s"], duck["peak"]
            print(f"  DuckDB {duck_wall:.1f}s, peak {duck_peak / 1e9:.1f} GB", flush=True)
        except SystemExit as failed:
            duck_wall = duck_peak = None
            print(f"  DuckDB did not finish: {failed}", flush=True)
        shutil.rmtree(home / "duckdb_tables", ignore_errors=True)
        spark_times.append((days, wall))
        spark_memory.append(peak / 1e9)
        if duck_wall is not None:
            duck_times.append((days, duck_wall))
            duck_memory.append(duck_peak / 1e9)
        rows_out.append(
            [
                f"{days}",
                f"{events / 1e6:,.1f} M",
                f"{csv_gb:.1f}",
                f"{wall:.1f}",
                f"{wall / days:.2f}",
                f"{peak / 1e9:.1f}",
                f"{duck_wall:.1f}" if duck_wall is not None else "did not finish",
                f"{duck_wall / days:.2f}" if duck_wall is not None else "–",
                f"{duck_peak / 1e9:.1f}" if duck_peak is not None else "–",
                f"{wall / duck_wall:.2f}" if duck_wall is not None else "–",
                ", ".join(f"{k} {v:.0f}" for k, v in steps.items()),
            ]
        )
        # recorded after every point, so a long run that is stopped keeps what it measured
        _record(
            rows_out, spark_times, duck_times, spark_memory, duck_memory, [earlier_note] if earlier else []
        )
    if earlier and len(rows_out) == len(earlier):  # nothing left to measure: the page again
        _record(rows_out, spark_times, duck_times, spark_memory, duck_memory, [earlier_note])
    return 0


def _chart(
    title: str, unit: str, days: list[int], spark: list[float], duck: list[float], form: str
) -> list[str]:
    """A Mermaid line chart of both sides against days (DuckDB's line only when it has every point)."""
    lines = [form.format(v) for v in spark], [form.format(v) for v in duck]
    return [
        f"**{title}** (the lines in order: FunnelPulse, DuckDB)",
        "",
        "```mermaid",
        "xychart-beta",
        f'    x-axis "days" [{", ".join(map(str, days))}]',
        f'    y-axis "{unit}"',
        *[f"    line [{', '.join(line)}]" for line in lines if len(line) == len(days)],
        "```",
        "",
    ]


def _record(rows_out, spark_times, duck_times, spark_memory, duck_memory, earlier: list[str]) -> None:
    header = ["days", "events", "CSV GB", "FunnelPulse s", "s/day", "peak GB", "DuckDB s", "s/day",
              "DuckDB peak GB", "× DuckDB", "FunnelPulse steps (s)"]  # fmt: skip
    tables = [figures_table("one cold backfill per point, in-process, laptop profile", header, rows_out)]
    days = [d for d, _ in spark_times]
    notes = [
        *_chart(
            "wall time against days, s",
            "seconds",
            days,
            [s for _, s in spark_times],
            [s for _, s in duck_times],
            "{:.0f}",
        ),
        *_chart("peak memory against days, GB", "GB", days, spark_memory, duck_memory, "{:.1f}"),
    ]
    finished = [d for d, _ in duck_times]
    unfinished = [str(d) for d, _ in spark_times if d not in finished]
    if unfinished:
        notes += [
            (
                f"DuckDB did not finish at {', '.join(unfinished)} days, where FunnelPulse did: the "
                "charts leave its lines out (a line needs every point); the table has its figures up to there."
            ),
            "",
        ]
    both = [(i, d) for i, (d, _) in enumerate(spark_times) if d in finished]
    if len(both) >= 2:
        notes.append(_crossing([spark_times[i] for i, _ in both], duck_times))
        notes += ["", _memory_slopes([d for _, d in both], [spark_memory[i] for i, _ in both], duck_memory)]
    record("scaling", tables, notes + ([""] + earlier if earlier else []))


if __name__ == "__main__":
    sys.exit(main())
