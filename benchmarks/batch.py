"""Batch benchmark: a month through bronze → silver → four gold tables, Dagster + Spark vs DuckDB.

    .venv/bin/python benchmarks/batch.py                 # 30 days × 135 k events ≈ 4 M rows
    .venv/bin/python benchmarks/batch.py --days 7        # quicker
    .venv/bin/python benchmarks/batch.py --per-day 2019-10-05   # also one day's chain from the CLI
    .venv/bin/python benchmarks/batch.py --floor         # also Spark's floor for this work
    .venv/bin/python benchmarks/batch.py --connect       # also twice on a local Spark Connect server
    .venv/bin/python benchmarks/batch.py --connect --warm-runs 3   # three warm runs, each with its own DuckDB run

1. generates the month with the sample generator (timed separately, not part of the ratio);
2. runs, in-process (FUNNELPULSE_SPARK_MODE=in-process: a cold JVM per run), `dagster asset materialize --select 'not group:streaming and not group:reports and not key:gold_anomalies_hourly_brand' --partition-range A...B` in a fresh process,
   exactly as a user would, and times it (wall time includes starting Python, Dagster and the
   Spark JVM; the per-step times printed beside it are the Spark work);
3. runs the same work in DuckDB in another fresh process: CSV → bronze Parquet (bad lines to a
   quarantine), silver (rules, normalisation, de-duplication), the four gold tables with event,
   session and user funnels and their rates, and the ordered session funnel, all written as
   day-partitioned Parquet; then the reads the Spark steps do besides writing their tables (the
   ownership pass and line reconciliation, rule and row counts, the asset checks: `duckdb_checks`),
   timed apart, so both "DuckDB" (the tables alone) and "DuckDB with the checks" (the same work
   as the Spark run) are reported;
4. prints events/s, wall time and peak memory (PSS of the whole process tree: shared pages
   counted by share; the JSON's keys say `peak_rss_gb`) of both, and
   the ratios: whole run against DuckDB's whole run, and bronze → silver → hourly brand gold (the
   Spark steps against the same DuckDB phases);
5. with `--floor`, the least work any Spark chain must do here (`spark_floor`), cold and warm,
   to show how close the ratio can come at all on this machine;
6. with `--per-day DAY`, one day's chain from the CLI in-process, then with the default
   configuration in fresh shells: the first run starts the home's local server, the next
   `--day-runs` runs (median) find it warm; then the same runs in a home whose only export is
   that day's lines, to compare bronze from a 30-day export with bronze from a one-day export;
   with `--profile-day` too, the day's run profiled on a warm server with Spark's UI on: the CLI's
   start and code load, and per step its Spark SQL executions, jobs and tasks, how long a Spark
   job was running, and the rest (planning, Delta's log, Dagster's events, Python);
7. with `--connect`, starts a local Spark Connect server (`funnelpulse spark start`) and runs the
   same command twice against it (FUNNELPULSE_SPARK_REMOTE): the first run meets a server whose
   JVM is up but has run nothing; the second (the *warm* figure) a server that has run this work
   once. Peak memory there is the client's tree plus the server's. With `--warm-runs N` (N > 1)
   the server runs it N times after the first, each run followed by a DuckDB run of its own, and
   the ratios of these neighbouring pairs and their median are reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from figures import flat, record  # benchmarks/figures.py: the performance page
from figures import table as figures_table

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _lake_size(root: Path) -> dict[str, float]:
    import pyarrow as pa
    from deltalake import DeltaTable

    files = [p for p in root.rglob("*") if p.is_file()]
    current = 0
    for table in (p for p in root.iterdir() if (p / "_delta_log").is_dir()):
        actions = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True))
        current += sum(actions.column("size_bytes").to_pylist())
    return {
        "lake_mb_on_disk": round(sum(p.stat().st_size for p in files) / 1e6, 1),
        "lake_files_on_disk": len(files),
        "lake_current_data_mb": round(current / 1e6, 1),
    }


def _resident_bytes(pid: int, rss_pages: int) -> int:
    """The process's proportional set size: its resident pages, each page shared with other
    processes counted by its share. Plain RSS counts a shared page in full in every process
    that maps it, so a JVM's short-lived forked helpers (Hadoop's local file system runs shell
    commands) would count the whole heap twice. 0 for a process gone by the time its PSS is
    read (such a helper has exited or replaced its image: its copy of the heap is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return rss_pages * os.sysconf("SC_PAGE_SIZE")  # a kernel without smaps_rollup


def _resident_pages() -> tuple[dict[int, list[int]], dict[int, int]]:
    """Every process's children and resident pages (RSS), from /proc/<pid>/stat: kernel
    counters, a few milliseconds for the whole machine."""
    children: dict[int, list[int]] = {}
    rss_pages: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss_pages[int(entry)] = pages
    return children, rss_pages


def _tree(roots: tuple[int, ...], children: dict[int, list[int]]) -> list[int]:
    pids, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, []))
    return pids


class PeakMemory:
    """The peak PSS of the process trees under `roots`, sampled every `interval` seconds.

    PSS comes from /proc/<pid>/smaps_rollup, and reading that walks the process's page tables:
    about 60 ms for a Spark JVM with 5 GB resident. Read every 0.2 s for the JVM and the client,
    as this function did until December 2026, it took about a quarter of a core from the run it
    measured (the same warm Connect run, alternating: 130.5 and 132.0 s watched that way, 108.6
    and 117.9 s not watched at all, 100.4 and 120.7 s watched by this class). So each
    sample sums the cheap RSS counters first, and reads PSS only when that sum exceeds the
    peak PSS seen so far by more than the pages the last PSS reading found shared: PSS never
    exceeds RSS, so a sample below that bound cannot hold a new peak unless sharing fell. To
    catch that too, PSS is read at least every `pss_every` seconds.
    """

    def __init__(self, roots: tuple[int, ...], interval: float = 0.2, pss_every: float = 5.0):
        self.roots, self.interval, self.pss_every = roots, interval, pss_every
        self.peak = 0
        self.samples = 0
        self.pss_reads = 0
        self._shared = 0  # RSS minus PSS at the last PSS reading
        self._last_pss = float("-inf")

    def sample(self) -> None:
        self.samples += 1
        children, rss_pages = _resident_pages()
        pids = [pid for pid in _tree(self.roots, children) if pid in rss_pages]
        rss = sum(rss_pages[pid] for pid in pids) * os.sysconf("SC_PAGE_SIZE")
        now = time.monotonic()
        if rss - self._shared <= self.peak and now - self._last_pss < self.pss_every:
            return
        pss = sum(_resident_bytes(pid, rss_pages[pid]) for pid in pids)
        self.pss_reads += 1
        self._last_pss = now
        self._shared = max(0, rss - pss)
        self.peak = max(self.peak, pss)

    def run_until(self, done: threading.Event) -> None:
        while not done.is_set():
            self.sample()
            time.sleep(self.interval)


def run_measured(cmd: list[str], env: dict[str, str], also: tuple[int, ...] = ()) -> tuple[float, int, str]:
    """Run a command; return (wall seconds, peak PSS bytes of its process tree plus the trees of
    the `also` pids, combined output)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    memory = PeakMemory((proc.pid, *also))
    done = threading.Event()
    sampler = threading.Thread(target=memory.run_until, args=(done,), daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(output[-5000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, memory.peak, output


DUCKDB_BRONZE_SQL = """
SET threads = {threads};
CREATE TEMP TABLE raw AS
  SELECT *, try_strptime(event_time, '%Y-%m-%d %H:%M:%S UTC') AS ts
  FROM read_csv('{raw}/*.csv', header = true, all_varchar = true, null_padding = true,
                ignore_errors = true, store_rejects = true, filename = true);
CREATE TEMP TABLE typed AS
  SELECT ts AS event_time, event_type,
         try_cast(product_id AS BIGINT) AS product_id, try_cast(category_id AS BIGINT) AS category_id,
         category_code, brand, try_cast(price AS DECIMAL(12,2)) AS price,
         try_cast(user_id AS BIGINT) AS user_id, user_session, filename AS source_file,
         CAST(ts AS DATE) AS event_date,
         CASE WHEN ts IS NULL THEN 'unparseable event_time'
              WHEN price IS NOT NULL AND try_cast(price AS DECIMAL(12,2)) IS NULL THEN 'non-numeric price'
         END AS reason
  FROM raw;
COPY (SELECT * EXCLUDE (reason) FROM typed WHERE reason IS NULL)
  TO '{out}/bronze_events' (FORMAT parquet, PARTITION_BY (event_date));
COPY (SELECT source_file, reason, coalesce(event_date, DATE '{start}') AS ingest_date FROM typed WHERE reason IS NOT NULL
      UNION ALL SELECT file_id::VARCHAR, error_message, DATE '{start}' FROM reject_errors)
  TO '{out}/bronze_quarantine' (FORMAT parquet, PARTITION_BY (ingest_date));
"""
DUCKDB_SILVER_SQL = """
COPY (
  SELECT * EXCLUDE (rn) FROM (
    SELECT *, lower(trim(brand)) AS brand_norm, nullif(lower(trim(category_code)), '') AS category_code_norm,
           split_part(nullif(lower(trim(category_code)), ''), '.', 1) AS category_root,
           CASE WHEN price < 10 THEN '<10' WHEN price < 30 THEN '10-30' WHEN price < 60 THEN '30-60' ELSE '60+' END AS price_band,
           row_number() OVER (PARTITION BY event_time, user_id, user_session, product_id, event_type ORDER BY price) AS rn
    FROM read_parquet('{out}/bronze_events/*/*.parquet', hive_partitioning = true)
    WHERE event_time IS NOT NULL AND event_type IN ('view', 'cart', 'remove_from_cart', 'purchase') AND price > 0)
  WHERE rn = 1) TO '{out}/silver_events' (FORMAT parquet, PARTITION_BY (event_date));
CREATE TEMP VIEW silver AS
  SELECT *, date_trunc('hour', event_time) AS window_start, date_trunc('hour', event_time) + INTERVAL 1 HOUR AS window_end,
         CAST(date_trunc('hour', event_time) AS DATE) AS window_date, event_date AS date, brand_norm AS brand
  FROM read_parquet('{out}/silver_events/*/*.parquet', hive_partitioning = true);
"""

# the gold tables: grain columns, partition column
GOLD_GRAINS = {
    "gold_funnel_hourly_brand": ("window_start, window_end, brand, window_date", "window_date"),
    "gold_funnel_daily_brand": ("brand, date", "date"),
    "gold_funnel_daily_category": ("category_root, date", "date"),
    "gold_funnel_hourly_price_band": ("window_start, window_end, price_band, window_date", "window_date"),
}
GOLD_SQL = """
COPY (
  SELECT *, {rates} FROM (
  SELECT {grain},
         count(*) FILTER (WHERE event_type = 'view') AS views, count(*) FILTER (WHERE event_type = 'cart') AS carts,
         count(*) FILTER (WHERE event_type = 'remove_from_cart') AS remove_from_carts,
         count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
         coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
         count(DISTINCT user_session) FILTER (WHERE event_type = 'view') AS view_sessions,
         count(DISTINCT user_session) FILTER (WHERE event_type = 'cart') AS cart_sessions,
         count(DISTINCT user_session) FILTER (WHERE event_type = 'purchase') AS purchase_sessions,
         count(DISTINCT user_id) FILTER (WHERE event_type = 'view') AS view_users,
         count(DISTINCT user_id) FILTER (WHERE event_type = 'cart') AS cart_users,
         count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase') AS purchase_users
  FROM silver GROUP BY {grain})
) TO '{out}/{table}' (FORMAT parquet, PARTITION_BY ({partition}));
"""
# gold_session_funnel_daily's columns after the counts, as in transforms/ordered_funnel.py
ORDERED_EXTRA_COLUMNS = (
    "viewed_sessions - carted_sessions AS dropped_after_view, "
    "carted_sessions - purchased_sessions AS dropped_after_cart"
)


def _rates_sql(rates) -> str:
    """rules.py's rates as DuckDB columns: numerator / denominator, NULL where it is 0."""
    return ", ".join(
        f"CASE WHEN {r.denominator} > 0 THEN {r.numerator} / {r.denominator} END AS {r.name}" for r in rates
    )


# the ordered session funnel (transforms/ordered_funnel.py): per session × dimension value, the
# first view, the first cart at or after it, the first purchase at or after that; per day the
# session started: counts and exact median / p90 times between the steps
ORDERED_FUNNEL_SQL = """
COPY (
  WITH sessions AS (
    SELECT user_session, event_time, event_type, brand_norm, category_root, price_band,
           CAST(min(event_time) OVER (PARTITION BY user_session) AS DATE) AS session_date
    FROM silver WHERE user_session IS NOT NULL),
  events AS (
    SELECT user_session, session_date, event_time, event_type, d.dimension, d.value
    FROM sessions, unnest([{{'dimension': 'shop', 'value': NULL::VARCHAR}},
                          {{'dimension': 'brand', 'value': brand_norm}},
                          {{'dimension': 'category_root', 'value': category_root}},
                          {{'dimension': 'price_band', 'value': price_band}}]) AS u(d)),
  viewed AS (
    SELECT *, min(event_time) FILTER (WHERE event_type = 'view')
                OVER (PARTITION BY user_session, dimension, value) AS t_view FROM events),
  carted AS (
    SELECT *, min(event_time) FILTER (WHERE event_type = 'cart' AND event_time >= t_view)
                OVER (PARTITION BY user_session, dimension, value) AS t_cart FROM viewed),
  steps AS (
    SELECT user_session, session_date, dimension, value, any_value(t_view) AS t_view,
           any_value(t_cart) AS t_cart,
           min(event_time) FILTER (WHERE event_type = 'purchase' AND event_time >= t_cart) AS t_purchase
    FROM carted WHERE t_view IS NOT NULL GROUP BY ALL)
  SELECT *, {extra}, {rates} FROM (
  SELECT session_date, dimension, value, count(*) AS viewed_sessions, count(t_cart) AS carted_sessions,
         count(t_purchase) AS purchased_sessions,
         quantile_cont(epoch(t_cart - t_view), [0.5, 0.9]) AS view_to_cart,
         quantile_cont(epoch(t_purchase - t_cart), [0.5, 0.9]) AS cart_to_purchase,
         quantile_cont(epoch(t_purchase - t_view), [0.5, 0.9]) AS view_to_purchase
  FROM steps GROUP BY ALL)
) TO '{out}/gold_session_funnel_daily' (FORMAT parquet, PARTITION_BY (session_date));
"""


# What the Spark run's steps do besides writing the tables, read back from what landed, as its
# assets do (defs/lakehouse/, lib/quality.py), so that the reference can do the same work: bronze's
# ownership pass over the whole files and the line reconciliation per file × day; silver's rule
# counts, row counts per day and its checks (rule violations, key uniqueness); per gold
# table its totals against silver's, rates, row counts per day, and the daily brand table
# against the hourly one; the ordered funnel's consistency and its recount of viewed sessions.
# Every query's answer is fetched, as the checks collect theirs.
def _parquet(out: str, table: str) -> str:
    return f"read_parquet('{out}/{table}/*/*.parquet', hive_partitioning = true)"


def _totals_sql(out: str, table: str, day: str) -> str:
    return (
        f"SELECT {day}, sum(views), sum(carts), sum(purchases), sum(revenue), count(*) "
        f"FROM {_parquet(out, table)} GROUP BY ALL"
    )


def _rates_valid_sql(out: str, table: str, rates) -> str:
    bad = ", ".join(
        f"count(*) FILTER (WHERE {r.name} < 0 OR ({r.name} IS NULL AND {r.denominator} > 0) "
        f"OR ({r.name} IS NOT NULL AND {r.denominator} = 0))"
        for r in rates
    )
    return f"SELECT {bad}, count(*) FROM {_parquet(out, table)}"


def duckdb_checks(raw: str, out: str) -> dict[str, list[str]]:
    """The check queries per step (see above)."""
    from funnelpulse_dagster.rules import EVENT_COUNTS, FUNNEL_RATES, ORDERED_RATES, REVENUE
    from funnelpulse_dagster.tables import EVENT_KEY, EVENT_TYPES

    silver_totals = (
        "SELECT event_date, count(*) FILTER (WHERE event_type = 'view'), "
        "count(*) FILTER (WHERE event_type = 'cart'), count(*) FILTER (WHERE event_type = 'purchase'), "
        f"coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) FROM {_parquet(out, 'silver_events')} "
        "GROUP BY ALL"
    )
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    daily_tables = ("gold_funnel_daily_brand", "gold_funnel_daily_category", "gold_funnel_hourly_price_band")
    metrics = (*EVENT_COUNTS, REVENUE)
    differs = " OR ".join(f"h.{m} IS DISTINCT FROM d.{m}" for m in metrics)
    return {
        "bronze": [
            (
                f"SELECT filename, left(event_time, 10), count(*) FROM read_csv('{raw}/*.csv', header = true, "
                "all_varchar = true, null_padding = true, ignore_errors = true, filename = true) GROUP BY ALL"
            ),
            f"SELECT source_file, event_date, count(*) FROM {_parquet(out, 'bronze_events')} GROUP BY ALL",
            f"SELECT source_file, ingest_date, count(*) FROM {_parquet(out, 'bronze_quarantine')} GROUP BY ALL",
        ],
        "silver_events": [
            (
                "SELECT event_date, CASE WHEN event_time IS NULL THEN 1 WHEN event_type IS NULL THEN 2 "
                f"WHEN event_type NOT IN ({types}) THEN 3 WHEN price IS NULL THEN 4 WHEN price <= 0 THEN 5 END, "
                f"count(*) FROM {_parquet(out, 'bronze_events')} GROUP BY ALL"
            ),
            f"SELECT event_date, count(*) FROM {_parquet(out, 'silver_events')} GROUP BY ALL",
            (
                "SELECT count(*) FILTER (WHERE event_time IS NULL), count(*) FILTER (WHERE event_type IS NULL), "
                f"count(*) FILTER (WHERE event_type NOT IN ({types})), count(*) FILTER (WHERE price IS NULL), "
                f"count(*) FILTER (WHERE price <= 0), count(*), count(DISTINCT hash({', '.join(EVENT_KEY)})) "
                f"FROM {_parquet(out, 'silver_events')}"
            ),
        ],
        "gold_funnel_hourly_brand": [
            _totals_sql(out, "gold_funnel_hourly_brand", "window_date"),
            silver_totals,
            _rates_valid_sql(out, "gold_funnel_hourly_brand", FUNNEL_RATES),
        ],
        "gold_daily_tables": [
            silver_totals,
            *[_totals_sql(out, t, "window_date" if "hourly" in t else "date") for t in daily_tables],
            *[_rates_valid_sql(out, t, FUNNEL_RATES) for t in daily_tables],
            (
                f"SELECT count(*) FROM (SELECT window_date AS date, brand, {', '.join(f'sum({m}) AS {m}' for m in metrics)} "
                f"FROM {_parquet(out, 'gold_funnel_hourly_brand')} GROUP BY ALL) h FULL OUTER JOIN "
                f"{_parquet(out, 'gold_funnel_daily_brand')} d ON h.date IS NOT DISTINCT FROM d.date "
                f"AND h.brand IS NOT DISTINCT FROM d.brand WHERE {differs}"
            ),
        ],
        "gold_session_funnel_daily": [
            (
                "SELECT count(*) FILTER (WHERE purchased_sessions > carted_sessions OR carted_sessions > viewed_sessions "
                "OR dropped_after_view <> viewed_sessions - carted_sessions "
                "OR dropped_after_cart <> carted_sessions - purchased_sessions), "
                f"count(*) FROM {_parquet(out, 'gold_session_funnel_daily')}"
            ),
            (
                f"SELECT session_date, viewed_sessions FROM {_parquet(out, 'gold_session_funnel_daily')} "
                "WHERE dimension = 'shop'"
            ),
            (
                "SELECT day, count(*) FROM (SELECT CAST(min(event_time) AS DATE) AS day, "
                "bool_or(event_type = 'view') AS viewed "
                f"FROM {_parquet(out, 'silver_events')} WHERE user_session IS NOT NULL GROUP BY user_session) "
                "WHERE viewed GROUP BY day"
            ),
            _rates_valid_sql(out, "gold_session_funnel_daily", ORDERED_RATES),
        ],
    }


def duckdb_reference(raw: str, out: str, start: str, threads: int) -> dict[str, float]:
    """The reference's work; returns seconds per phase (bronze, silver, each gold table), then of
    each step's checks (`<step>_checks`), which run after all the tables."""
    import duckdb

    from funnelpulse_dagster.rules import FUNNEL_RATES, ORDERED_RATES

    phases = {}
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(DUCKDB_BRONZE_SQL.format(raw=raw, out=out, start=start, threads=threads))
    phases["bronze"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute(DUCKDB_SILVER_SQL.format(out=out))
    phases["silver_events"] = time.perf_counter() - t
    for table, (grain, partition) in GOLD_GRAINS.items():
        t = time.perf_counter()
        con.execute(
            GOLD_SQL.format(
                grain=grain, out=out, table=table, partition=partition, rates=_rates_sql(FUNNEL_RATES)
            )
        )
        phases[table] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute(
        ORDERED_FUNNEL_SQL.format(out=out, extra=ORDERED_EXTRA_COLUMNS, rates=_rates_sql(ORDERED_RATES))
    )
    phases["gold_session_funnel_daily"] = time.perf_counter() - t
    for step, queries in duckdb_checks(raw, out).items():
        t = time.perf_counter()
        for query in queries:
            con.execute(query).fetchall()
        phases[f"{step}_checks"] = time.perf_counter() - t
    return phases


SPARK_RAW_SCHEMA = (
    "event_time string, event_type string, product_id long, category_id long, category_code string, "
    "brand string, price decimal(12,2), user_id long, user_session string"
)


def spark_floor(raw: str, out: str) -> dict[str, float]:
    """The least work any Spark chain must do for these tables, in a fresh process as the CLI
    runs it (cold JVM), without Dagster, checks, quarantine or de-duplication logic: start the
    session; parse the CSV with its schema and write it as day-partitioned Parquet; shuffle the
    month once (de-duplication needs at least that) and write it; one plain aggregation per gold
    table (no session or user funnels) and write it. Then the same work again in the same JVM
    (warm), which no CLI run gets."""
    t = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from pyspark.sql import functions as F

    from funnelpulse_dagster.resources.spark import SparkResource

    spark = SparkResource(master=f"local[{os.cpu_count() or 2}]").spark_session
    phases = {"session_start": time.perf_counter() - t}
    hour = F.date_trunc("hour", "event_time")
    grains = {
        "hourly_brand": [hour.alias("h"), "brand"],
        "daily_brand": [F.to_date("event_time").alias("d"), "brand"],
        "daily_category": [F.to_date("event_time").alias("d"), "category_code"],
        "hourly_price": [hour.alias("h"), (F.col("price") >= 10).alias("band")],
    }
    for run in ("cold", "warm"):
        base = f"{out}/{run}"
        t = time.perf_counter()
        timestamp = F.try_to_timestamp("event_time", F.lit("yyyy-MM-dd HH:mm:ss 'UTC'"))
        (
            spark.read.csv(f"{raw}/*.csv", header=True, schema=SPARK_RAW_SCHEMA)
            .withColumn("event_time", timestamp)
            .withColumn("event_date", F.to_date("event_time"))
            .write.partitionBy("event_date")
            .parquet(f"{base}/bronze")
        )
        phases[f"{run}_csv_to_parquet"] = time.perf_counter() - t
        t = time.perf_counter()
        (
            spark.read.parquet(f"{base}/bronze")
            .repartition("event_date", "event_time", "user_session")
            .write.partitionBy("event_date")
            .parquet(f"{base}/silver")
        )
        phases[f"{run}_one_shuffle"] = time.perf_counter() - t
        for name, grain in grains.items():
            t = time.perf_counter()
            silver = spark.read.parquet(f"{base}/silver")
            silver.groupBy(*grain).agg(F.count("*"), F.sum("price")).write.parquet(f"{base}/{name}")
            phases[f"{run}_aggregate_{name}"] = time.perf_counter() - t
    return phases


def _phases(output: str) -> dict[str, float]:
    """The phase timings a --duckdb-only / --floor-only child printed."""
    (line,) = [line for line in output.splitlines() if line.startswith("PHASES ")]
    return json.loads(line.removeprefix("PHASES "))


def materialize_cmd(*partition_args: str) -> list[str]:
    """The user's command for every table over some partitions."""
    return [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "funnelpulse_dagster.definitions",
        "--select",
        # what DuckDB also does: no anomalies, no report (the report has its own figure in
        # docs/serving.md)
        "not group:streaming and not group:reports and not key:gold_anomalies_hourly_brand",
        *partition_args,
    ]


_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _duration_seconds(text: str) -> float:
    """Dagster's step duration: `950ms`, `12.3s`, `1m45s`, `1h2m3s`."""
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in re.findall(r"([\d.]+)(ms|h|m|s)", text))


_LOG_LINE = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 - dagster - .*?"


def _steps(output: str) -> dict[str, float]:
    """Seconds per step, from the run's `Finished execution of step` lines.

    Dagster now and then logs no STEP_SUCCESS for the multi-asset step even though the run
    succeeds; such a step is timed from its STEP_START line to the next step's start or the end of
    the steps, at the log's one-second resolution.
    """
    pattern = r'Finished execution of step "(\w+)" in ((?:[\d.]+(?:ms|h|m|s))+)\.'
    steps = {name: round(_duration_seconds(duration), 2) for name, duration in re.findall(pattern, output)}
    marks = re.findall(
        _LOG_LINE + r'(?:Started execution of step "(\w+)"|(Finished steps in process))', output, re.MULTILINE
    )
    for (start, name, _), (end, _, _) in itertools.pairwise(marks):
        if name and name not in steps:
            seconds = datetime.fromisoformat(end) - datetime.fromisoformat(start)
            steps[name] = round(seconds.total_seconds(), 2)
    return steps


def run_duckdb(raw: Path, out: Path, start: date, env: dict[str, str]) -> dict:
    """The DuckDB reference in a fresh process: its wall time for the tables alone (the process
    minus the checks, which run after every table), with the checks, peak memory and phases."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--duckdb-only", str(raw), str(out), str(start)]
    wall, peak, output = run_measured(cmd, env)
    phases = _phases(output)
    checks = sum(v for k, v in phases.items() if k.endswith("_checks"))
    return {"wall_s": wall - checks, "with_checks_wall_s": wall, "peak": peak, "phases": phases}


def _ratios(wall: float, duck_wall: float, duck_checked: float) -> dict[str, float]:
    return {
        "ratio_wall": round(wall / duck_wall, 2),
        "ratio_wall_with_checks": round(wall / duck_checked, 2),
    }


def connect_runs(
    home: Path,
    env: dict[str, str],
    dagster_cmd: list[str],
    memory: str,
    warm_runs: int,
    duck: tuple[float, float, float],
    raw: Path,
    start: date,
) -> dict:
    """The same command on a fresh local Spark Connect server: first, then `warm_runs` warm runs.

    The first run is compared with the benchmark's DuckDB run. With more than one warm run, each
    is followed by a DuckDB run of its own and compared with that: both sides drift on this
    machine (each by up to 1.7x between runs an hour apart), and a ratio of neighbours drifts
    less than a ratio of runs far apart. The median of those ratios is reported."""
    from funnelpulse_dagster.runtime import spark_server
    from funnelpulse_dagster.runtime.spark_session import spark_conf

    server_home = home / "connect"
    started = time.perf_counter()
    server = spark_server.start(server_home, conf=spark_conf("local[*]", memory, 8, {}), idle_minutes=0)
    pid = server.pid
    server_start = time.perf_counter() - started
    connect_env = {**env, "FUNNELPULSE_SPARK_REMOTE": server.url}
    figures: dict = {"server_start_s": round(server_start, 1), "server_memory": memory, "warm_pairs": []}
    duck_wall, duck_checked, duck_chain = duck
    try:
        for n in range(1 + warm_runs):
            name = "first" if n == 0 else "warm"
            shutil.rmtree(home / "tables", ignore_errors=True)
            wall, peak, output = run_measured(dagster_cmd, connect_env, also=(pid,))
            steps = _steps(output)
            chain = sum(
                steps.get(step, 0.0) for step in ("bronze", "silver_events", "gold_funnel_hourly_brand")
            )
            run = {
                "wall_s": round(wall, 1),
                "steps_s": steps,
                "peak_rss_gb": round(peak / 1e9, 2),
                **_ratios(wall, duck_wall, duck_checked),
                "bronze_silver_hourly_gold_s": round(chain, 1),
                "ratio_chain": round(chain / duck_chain, 2),
            }
            print(f"Connect {name} run: {wall:.1f}s", flush=True)
            if name == "first":
                figures["first"] = run
                continue
            figures.setdefault("warm", run)  # the second run on the server, as before
            if warm_runs > 1:
                own = run_duckdb(raw, home / "duckdb_tables", start, env)
                pair = {
                    "warm_wall_s": run["wall_s"],
                    "duckdb_wall_s": round(own["wall_s"], 1),
                    "duckdb_with_checks_wall_s": round(own["with_checks_wall_s"], 1),
                    **_ratios(wall, own["wall_s"], own["with_checks_wall_s"]),
                }
                figures["warm_pairs"].append(pair)
                print(f"  its DuckDB reference: {own['wall_s']:.1f}s ({pair['ratio_wall']}x)", flush=True)
    finally:
        spark_server.stop(server_home)
    if figures["warm_pairs"]:
        figures["warm_pairs_median"] = {
            key: round(statistics.median(p[key] for p in figures["warm_pairs"]), 2)
            for key in ("warm_wall_s", "duckdb_wall_s", "ratio_wall", "ratio_wall_with_checks")
        }
    return figures


def _default_configuration(env: dict[str, str]) -> dict[str, str]:
    """`env` without a Spark mode or endpoint: runs use the home's local server."""
    return {k: v for k, v in env.items() if k not in ("FUNNELPULSE_SPARK_MODE", "FUNNELPULSE_SPARK_REMOTE")}


def default_day_runs(home: Path, env: dict[str, str], day: str, runs: int) -> dict:
    """One day's chain from the CLI with the default Spark configuration, each run in a fresh
    shell: the first starts the home's local server, the later ones find it warm. Peak memory
    counts the server too; each step's median over the later runs is reported."""
    from funnelpulse_dagster.runtime import spark_server

    default_env = _default_configuration(env)
    walls, peaks, steps = [], [], []
    try:
        for n in range(1 + runs):
            servers = spark_server.running(home)
            wall, peak, output = run_measured(
                materialize_cmd("--partition", day), default_env, also=tuple(s.pid for s in servers)
            )
            walls.append(round(wall, 1))
            peaks.append(round(peak / 1e9, 2))
            steps.append(_steps(output))
            print(f"one day, default configuration, run {n + 1}: {wall:.1f}s {steps[-1]}", flush=True)
    finally:
        spark_server.stop(home)
    return {
        "first_wall_s": walls[0],
        "later_walls_s": walls[1:],
        "later_median_wall_s": round(statistics.median(walls[1:]), 1),
        "later_median_steps_s": {
            step: round(statistics.median(s.get(step, 0.0) for s in steps[1:]), 2) for step in steps[-1]
        },
        "peak_pss_gb": max(peaks),
    }


def _spark_rest(port: int, path: str) -> list[dict]:
    """A list from the Spark UI's REST API of the local server's one application."""
    import urllib.request

    base = f"http://127.0.0.1:{port}/api/v1/applications"
    with urllib.request.urlopen(base, timeout=10) as response:
        (app,) = json.load(response)
    with urllib.request.urlopen(f"{base}/{app['id']}/{path}", timeout=30) as response:
        return json.load(response)


def _ui_time(text: str) -> float:
    """Epoch seconds of the UI's `2026-12-06T16:02:18.953GMT`."""
    return datetime.strptime(text.removesuffix("GMT"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def _busy_seconds(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """How long at least one of `intervals` ran within [start, end]."""
    busy, reach = 0.0, start
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, end)
        if b > a:
            busy += b - a
            reach = b
    return busy


def profile_day(home: Path, env: dict[str, str], day: str) -> dict:
    """Where one day's run from the CLI spends its wall time, on a local server with Spark's UI
    on (a server of its own: its settings differ), measured on the second of two runs: the CLI's
    start and code load until the run starts, then per step the Spark SQL executions, jobs and
    tasks it submitted and how long a Spark job was running, and the rest (planning, Delta's
    log, Dagster's events, Python)."""
    from dagster import DagsterEventType, DagsterInstance

    from funnelpulse_dagster.runtime import spark_server
    from funnelpulse_dagster.runtime.services import free_port

    port = free_port()
    profile_env = {
        **_default_configuration(env),
        "FUNNELPULSE_SPARK_CONF": f"spark.ui.enabled=true spark.ui.port={port}",
    }
    try:
        for _ in range(2):
            launched = time.time()
            wall, _, output = run_measured(materialize_cmd("--partition", day), profile_env)
        executions = _spark_rest(port, "sql?details=false&length=100000")
        jobs = _spark_rest(port, "jobs")
    finally:
        spark_server.stop(home)
    (run_id,) = set(re.findall(r" - ([0-9a-f-]{36}) - \d+ - RUN_START ", output))
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        events = [e for e in instance.all_logs(run_id) if e.dagster_event is not None]
    marks: dict[str, dict[str, float]] = {}
    run_start = run_end = None
    step_marks = {
        DagsterEventType.STEP_START: "start",
        DagsterEventType.STEP_SUCCESS: "end",
        DagsterEventType.STEP_FAILURE: "end",
    }
    for entry in events:
        kind = entry.dagster_event.event_type
        if kind == DagsterEventType.RUN_START:
            run_start = entry.timestamp
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            run_end = entry.timestamp
        elif kind in step_marks:
            marks.setdefault(entry.step_key, {})[step_marks[kind]] = entry.timestamp
    job_spans = [
        (_ui_time(j["submissionTime"]), _ui_time(j["completionTime"]), j["numTasks"])
        for j in jobs
        if "submissionTime" in j and "completionTime" in j
    ]
    submitted = [_ui_time(e["submissionTime"]) for e in executions]
    steps = {}
    for step, m in sorted(marks.items(), key=lambda item: item[1]["start"]):
        start, end = m["start"], m.get("end", run_end)
        inside = [(a, b, n) for a, b, n in job_spans if start <= a <= end]
        busy = _busy_seconds([(a, b) for a, b, _ in inside], start, end)
        steps[step] = {
            "wall_s": round(end - start, 2),
            "spark_sql_executions": sum(1 for t in submitted if start <= t <= end),
            "spark_jobs": len(inside),
            "spark_tasks": sum(n for _, _, n in inside),
            "spark_job_running_s": round(busy, 2),
            "rest_s": round(end - start - busy, 2),
        }
    first_step = min(m["start"] for m in marks.values())
    last_step = max(m.get("end", run_end) for m in marks.values())
    return {
        "wall_s": round(wall, 1),
        "cli_start_and_code_load_s": round(run_start - launched, 2),
        "run_start_to_first_step_s": round(first_step - run_start, 2),
        "steps": steps,
        "last_step_to_exit_s": round(launched + wall - last_step, 2),
    }


def _profile_table(day: str, profile: dict) -> str:
    rows = [["the CLI's start and code load, until the run starts", profile["cli_start_and_code_load_s"]]]
    rows.append(["the run's start, until its first step", profile["run_start_to_first_step_s"]])
    for step, f in profile["steps"].items():
        rows.append(
            [
                f"step {step}",
                f["wall_s"],
                f["spark_sql_executions"],
                f["spark_jobs"],
                f["spark_tasks"],
                f["spark_job_running_s"],
                f["rest_s"],
            ]
        )
    rows.append(["after the last step, until the command exits", profile["last_step_to_exit_s"]])
    rows.append(["the whole command", profile["wall_s"]])
    return figures_table(
        f"one day ({day}) on a warm local server, profiled (its second run; Spark's UI on)",
        [
            "part",
            "wall s",
            "Spark SQL executions",
            "Spark jobs",
            "tasks",
            "a Spark job running (s)",
            "the rest (s)",
        ],
        [r + ["–"] * (7 - len(r)) for r in rows],
    )


def one_day_export(home: Path, raw: Path, day: str, env: dict[str, str], runs: int) -> dict:
    """The same day's runs in a home of its own whose landing folder holds one export with only
    that day's lines: what bronze costs when the export is the day itself."""
    own = home / "one_day_export"
    shutil.rmtree(own, ignore_errors=True)
    (own / "data_raw").mkdir(parents=True)
    (own / "dagster").mkdir()
    shutil.copy(REPO / "dagster.yaml", own / "dagster" / "dagster.yaml")
    with (own / "data_raw" / f"events-{day}.csv").open("w") as out:
        for i, path in enumerate(sorted(raw.glob("*.csv"))):
            with path.open() as lines:
                header = next(lines)
                if i == 0:
                    out.write(header)
                out.writelines(line for line in lines if line.startswith(day))
    own_env = {**env, "FUNNELPULSE_HOME": str(own), "DAGSTER_HOME": str(own / "dagster")}
    return default_day_runs(own, own_env, day, runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", default="2019-10-01")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events-per-day", type=int, default=135_000)
    parser.add_argument("--home", help="FUNNELPULSE_HOME to use (default: a temporary folder)")
    parser.add_argument(
        "--per-day",
        help="also time one day's chain from the CLI, e.g. 2019-10-05: in-process, and with the default "
        "configuration (the home's local server) in fresh shells",
    )
    parser.add_argument(
        "--day-runs", type=int, default=3, help="with --per-day: warm default-configuration runs (median)"
    )
    parser.add_argument(
        "--profile-day",
        action="store_true",
        help="with --per-day: also profile that day's run on a server with Spark's UI on (Spark SQL "
        "executions, jobs, tasks and job time per step; the CLI's start)",
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the least work any Spark chain must do (spark_floor), in a fresh process",
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="also run twice on a local Spark Connect server (first run, then warm)",
    )
    parser.add_argument("--server-memory", default="6g", help="driver heap of the --connect server")
    parser.add_argument(
        "--warm-runs",
        type=int,
        default=1,
        help="with --connect: this many warm runs on the server, each followed by its own DuckDB "
        "reference run (the ratios of the pairs, and their median, are reported)",
    )
    parser.add_argument("--duckdb-only", nargs=3, metavar=("RAW", "OUT", "START"), help=argparse.SUPPRESS)
    parser.add_argument("--floor-only", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = os.cpu_count() or 2
    if args.duckdb_only:
        print("PHASES " + json.dumps(duckdb_reference(*args.duckdb_only, threads=threads)))
        return 0
    if args.floor_only:
        print("PHASES " + json.dumps(spark_floor(*args.floor_only)))
        return 0

    home = Path(args.home or tempfile.mkdtemp(prefix="funnelpulse-bench-"))
    raw = home / "data_raw"
    # the in-process runs: a Spark JVM in each run (FUNNELPULSE_SPARK_MODE=in-process)
    env = {
        **os.environ,
        "FUNNELPULSE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "FUNNELPULSE_SPARK_MODE": "in-process",
    }
    env.pop("FUNNELPULSE_LAKE", None)
    env.pop("FUNNELPULSE_SPARK_REMOTE", None)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    start = date.fromisoformat(args.start)
    end = start + timedelta(days=args.days - 1)

    sys.path.insert(0, str(REPO))
    from funnelpulse_dagster.generator import generate

    shutil.rmtree(raw, ignore_errors=True)
    t = time.perf_counter()
    summary = generate(raw, start, args.days, events_per_day=args.events_per_day, anomalies=4)
    gen_seconds = time.perf_counter() - t
    rows = summary.rows
    csv_mb = sum(Path(f).stat().st_size for f in summary.files) / 1e6
    print(f"generated {rows:,} rows ({csv_mb:,.0f} MB of CSV) in {gen_seconds:.1f}s", flush=True)

    shutil.rmtree(home / "tables", ignore_errors=True)
    dagster_cmd = materialize_cmd("--partition-range", f"{start}...{end}")
    spark_wall, spark_peak, output = run_measured(dagster_cmd, env)
    steps = _steps(output)
    spark_work = sum(steps.values())

    duck = run_duckdb(raw, home / "duckdb_tables", start, env)
    duck_wall, duck_peak, duck_phases = duck["wall_s"], duck["peak"], duck["phases"]
    # issue #2's chain (bronze → silver → hourly brand gold) on both sides, from the step times
    chain_2 = ("bronze", "silver_events", "gold_funnel_hourly_brand")
    spark_chain_2 = sum(steps.get(step, 0.0) for step in chain_2)
    duck_chain_2 = sum(duck_phases[step] for step in chain_2)
    duck_checked = duck["with_checks_wall_s"]
    floor = {}
    if args.floor:
        floor_out = home / "spark_floor"
        shutil.rmtree(floor_out, ignore_errors=True)
        floor_cmd = [sys.executable, str(Path(__file__).resolve()), "--floor-only", str(raw), str(floor_out)]
        _, _, floor_output = run_measured(floor_cmd, env)
        floor = _phases(floor_output)
        shutil.rmtree(floor_out, ignore_errors=True)

    results = {
        "rows": rows,
        "days": args.days,
        "csv_mb": round(csv_mb, 1),
        # the lake after the in-process run: every file under it (data files, Delta logs), and
        # the data files of the tables' newest versions
        **_lake_size(home / "tables"),
        "cores": threads,
        "dagster_spark_wall_s": round(spark_wall, 1),
        "dagster_spark_steps_s": steps,
        "dagster_spark_step_total_s": round(spark_work, 1),
        "dagster_spark_peak_rss_gb": round(spark_peak / 1e9, 2),
        "duckdb_wall_s": round(duck_wall, 1),
        "duckdb_with_checks_wall_s": round(duck_checked, 1),
        "duckdb_peak_rss_gb": round(duck_peak / 1e9, 2),
        **_ratios(spark_wall, duck_wall, duck_checked),
        "ratio_steps": round(spark_work / duck_wall, 2),
        "duckdb_phases_s": {k: round(v, 2) for k, v in duck_phases.items()},
        "bronze_silver_hourly_gold": {
            "spark_steps_s": round(spark_chain_2, 1),
            "duckdb_s": round(duck_chain_2, 1),
            "ratio": round(spark_chain_2 / duck_chain_2, 2),
        },
    }
    if floor:
        cold = [k for k in floor if k.startswith("cold_")]
        warm = [k for k in floor if k.startswith("warm_")]
        chain_2_floor = ("cold_csv_to_parquet", "cold_one_shuffle", "cold_aggregate_hourly_brand")
        results["spark_floor_s"] = {k: round(v, 2) for k, v in floor.items()}
        results["spark_floor_summary"] = {
            "whole_chain_cold_with_session_s": round(floor["session_start"] + sum(floor[k] for k in cold), 1),
            "whole_chain_warm_s": round(sum(floor[k] for k in warm), 1),
            "bronze_silver_hourly_gold_cold_with_session_s": round(
                floor["session_start"] + sum(floor[k] for k in chain_2_floor), 1
            ),
            "bronze_silver_hourly_gold_warm_s": round(
                sum(floor[k.replace("cold_", "warm_")] for k in chain_2_floor), 1
            ),
        }
    if args.connect:
        results["connect"] = connect_runs(
            home,
            env,
            dagster_cmd,
            args.server_memory,
            args.warm_runs,
            (duck_wall, duck_checked, duck_chain_2),
            raw,
            start,
        )
    if args.per_day:
        day_cmd = materialize_cmd("--partition", args.per_day)
        day_wall, day_peak, _ = run_measured(day_cmd, env)
        results.update(
            {"one_day_cli_wall_s": round(day_wall, 1), "one_day_peak_rss_gb": round(day_peak / 1e9, 2)}
        )
        if args.profile_day:
            results["one_day_profile"] = profile_day(home, env, args.per_day)
        results["one_day_default"] = default_day_runs(home, env, args.per_day, args.day_runs)
        results["one_day_export_default"] = one_day_export(home, raw, args.per_day, env, args.day_runs)
        from_month = results["one_day_default"]["later_median_steps_s"].get("bronze", 0.0)
        from_day = results["one_day_export_default"]["later_median_steps_s"].get("bronze", 0.0)
        results["bronze_30_day_export_over_one_day_export"] = (
            round(from_month / from_day, 2) if from_day else None
        )

    print()
    print(f"{'':34}{'wall s':>9}{'events/s':>12}{'peak PSS GB':>13}")
    print(
        f"{'Dagster + Spark (CLI, whole run)':34}{spark_wall:>9.1f}{rows / spark_wall:>12,.0f}{spark_peak / 1e9:>13.2f}"
    )
    print(f"{'  of which Spark steps':34}{spark_work:>9.1f}{rows / spark_work:>12,.0f}")
    for step, seconds in steps.items():
        print(f"{'    ' + step:34}{seconds:>9.1f}")
    print(f"{'DuckDB reference':34}{duck_wall:>9.1f}{rows / duck_wall:>12,.0f}{duck_peak / 1e9:>13.2f}")
    print(f"{'DuckDB reference with the checks':34}{duck_checked:>9.1f}{rows / duck_checked:>12,.0f}")
    print(
        f"ratio Spark/DuckDB: {results['ratio_wall']}x whole run, {results['ratio_steps']}x Spark steps only; "
        f"{results['ratio_wall_with_checks']}x DuckDB with the checks"
    )
    print("DuckDB phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in duck_phases.items()))
    chain = results["bronze_silver_hourly_gold"]
    print(
        f"bronze → silver → hourly brand gold: Spark steps {chain['spark_steps_s']}s, "
        f"DuckDB {chain['duckdb_s']}s, ratio {chain['ratio']}x"
    )
    if floor:
        summary = results["spark_floor_summary"]
        print("Spark floor (s): " + ", ".join(f"{k} {v:.1f}" for k, v in floor.items()))
        print(
            f"Spark floor, whole chain: {summary['whole_chain_cold_with_session_s']}s cold with the session "
            f"start ({summary['whole_chain_cold_with_session_s'] / duck_wall:.2f}x DuckDB's whole run), "
            f"{summary['whole_chain_warm_s']}s warm"
        )
        print(
            f"Spark floor, bronze → silver → hourly gold: "
            f"{summary['bronze_silver_hourly_gold_cold_with_session_s']}s cold with the session start "
            f"({summary['bronze_silver_hourly_gold_cold_with_session_s'] / duck_chain_2:.2f}x DuckDB's "
            f"{duck_chain_2:.1f}s), {summary['bronze_silver_hourly_gold_warm_s']}s warm"
        )
    if args.connect:
        c = results["connect"]
        print(f"Spark Connect server start: {c['server_start_s']}s (once, outside the runs)")
        for name in ("first", "warm"):
            run = c[name]
            print(
                f"{'Connect ' + name + ' run (CLI, whole run)':34}{run['wall_s']:>9.1f}{rows / run['wall_s']:>12,.0f}"
                f"{run['peak_rss_gb']:>13.2f}   {run['ratio_wall']}x DuckDB ({run['ratio_wall_with_checks']}x "
                f"with its checks); bronze → silver → hourly gold {run['bronze_silver_hourly_gold_s']}s "
                f"({run['ratio_chain']}x)"
            )
        for i, pair in enumerate(c["warm_pairs"], start=1):
            print(
                f"  warm run {i}: {pair['warm_wall_s']}s, its DuckDB {pair['duckdb_wall_s']}s "
                f"({pair['duckdb_with_checks_wall_s']}s with the checks): {pair['ratio_wall']}x "
                f"({pair['ratio_wall_with_checks']}x)"
            )
        if c["warm_pairs"]:
            m = c["warm_pairs_median"]
            print(
                f"  median of {len(c['warm_pairs'])} warm pairs: {m['ratio_wall']}x DuckDB, "
                f"{m['ratio_wall_with_checks']}x DuckDB with the checks"
            )
    if args.per_day:
        print(
            f"one day's chain from the CLI ({args.per_day}): {results['one_day_cli_wall_s']}s wall in-process"
        )
        d = results["one_day_default"]
        print(
            f"  default configuration, fresh shells: first {d['first_wall_s']}s (starts the server), "
            f"then median {d['later_median_wall_s']}s of {d['later_walls_s']}"
        )
        if "one_day_profile" in results:
            prof = results["one_day_profile"]
            print(f"  profiled: CLI start and code load {prof['cli_start_and_code_load_s']}s; per step:")
            for step, f in prof["steps"].items():
                print(f"    {step}: {f}")
        e = results["one_day_export_default"]
        print(
            f"  the same from a one-day export: median {e['later_median_wall_s']}s; bronze from the "
            f"30-day export / from the one-day export: {results['bronze_30_day_export_over_one_day_export']}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    header = ["run", "wall s", "events/s", "peak PSS GB", "× DuckDB"]
    runs = [
        [
            "Dagster + Spark in-process (CLI, whole run)",
            spark_wall,
            round(rows / spark_wall),
            spark_peak / 1e9,
            results["ratio_wall"],
        ],
        ["DuckDB reference", duck_wall, round(rows / duck_wall), duck_peak / 1e9, 1.0],
        [
            "DuckDB reference with the checks",
            duck_checked,
            round(rows / duck_checked),
            "–",
            round(duck_checked / duck_wall, 2),
        ],
    ]
    if args.connect:
        for name in ("first", "warm"):
            run = results["connect"][name]
            runs.insert(
                1 + (name == "warm"),
                [
                    f"Spark Connect {name} run (CLI, whole run)",
                    run["wall_s"],
                    round(rows / run["wall_s"]),
                    run["peak_rss_gb"],
                    run["ratio_wall"],
                ],
            )
    if args.per_day:
        runs.append(
            [
                f"one day from the CLI, in-process ({args.per_day})",
                results["one_day_cli_wall_s"],
                "–",
                results["one_day_peak_rss_gb"],
                "–",
            ]
        )
        d = results["one_day_default"]
        runs.append(
            [
                "one day, default configuration, first run (starts the server)",
                d["first_wall_s"],
                "–",
                "–",
                "–",
            ]
        )
        runs.append(
            [
                f"one day, default configuration, later runs in fresh shells (median of {len(d['later_walls_s'])})",
                d["later_median_wall_s"],
                "–",
                d["peak_pss_gb"],
                "–",
            ]
        )
        e = results["one_day_export_default"]
        runs.append(
            [
                f"the same from a one-day export (median of {len(e['later_walls_s'])})",
                e["later_median_wall_s"],
                "–",
                e["peak_pss_gb"],
                "–",
            ]
        )
    tables = [
        figures_table(f"{rows:,} events, {args.days} days, {results['csv_mb']} MB of CSV", header, runs),
        figures_table("Spark steps, in-process run (s)", ["step", "s"], [[k, v] for k, v in steps.items()]),
        *(
            [
                figures_table(
                    f"one day ({args.per_day}), default configuration, later runs: median step times (s)",
                    ["step", "from the 30-day export", "from a one-day export"],
                    [
                        [k, v, results["one_day_export_default"]["later_median_steps_s"].get(k, "–")]
                        for k, v in results["one_day_default"]["later_median_steps_s"].items()
                    ],
                )
            ]
            if args.per_day
            else []
        ),
        *([_profile_table(args.per_day, results["one_day_profile"])] if "one_day_profile" in results else []),
        flat("all figures", results),
    ]
    record("batch", tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
