"""The read side of the lakehouse: DuckDB over the lake's Delta tables, for the report, the web
service, the CLI and the sensors, with no JVM. All run the same SQL (serving/queries.py) against
tables named as in tables.py.

Which files make up a table is the Delta log's answer, read with delta-rs (`deltalake`): the
data files of the newest version (or of a version as of a time), never every Parquet file in
the folder, which still holds files of older versions and of failed writes.

Two ways to present the tables to that SQL:
- `parquet`: each table is a view over its version's Parquet files. Nothing is copied; right for
  a one-shot reader (the report, the CLI, a read as of a time). Reading in place needs a local
  lake: DuckDB would read `gs://` only through its httpfs extension, which it downloads at run
  time, so a lake on `gs://` is always copied (an in-memory replica when this mode is asked for).
- `replica`: a DuckDB database file mirrors the tables partition by partition. `refresh()`
  compares every partition's files (path, size, modification time) with what it copied last
  time and re-copies only partitions that changed, so a background refresh every few seconds
  costs a read of the log when nothing moved. Why: one brand over a month from Parquet decodes
  every column of ~30 daily files for every request; DuckDB's own storage answers the same
  from its indexes and column segments (`benchmarks/api.py` measures both modes).

A lake on `gs://` is listed with delta-rs and read through pyarrow's filesystems (lakefs.py:
credentials from the environment, STORAGE_EMULATOR_HOST for an emulator) and copied into
DuckDB from Arrow, so nothing is downloaded at run time.

The data is never loaded into Python: queries filter, aggregate and page in DuckDB, which keeps
the replica on disk and within `memory_limit`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructType,
    TimestampType,
)

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_SESSION_FUNNEL_DAILY,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    GOLD_TABLES,
    LIVE_TABLES,
    Table,
)

# What the report and the service read.
SERVED_TABLES: tuple[Table, ...] = (
    *GOLD_TABLES,
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    *LIVE_TABLES,
    GOLD_SESSION_FUNNEL_DAILY,
)
MODES = ("replica", "parquet")

_SIMPLE_TYPES: dict[type, str] = {
    StringType: "VARCHAR",
    LongType: "BIGINT",
    IntegerType: "INTEGER",
    DoubleType: "DOUBLE",
    BooleanType: "BOOLEAN",
    DateType: "DATE",
    # stored as naive UTC: every connection runs with TimeZone=UTC, so the cast from the
    # Parquet files' UTC-adjusted instants keeps the wall-clock hour of the tables
    TimestampType: "TIMESTAMP",
    BinaryType: "BLOB",
}


def duckdb_type(dtype: DataType) -> str:
    """The DuckDB type of a Spark type from tables.py (the schemas are declared once)."""
    if isinstance(dtype, DecimalType):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if isinstance(dtype, ArrayType):
        return f"{duckdb_type(dtype.elementType)}[]"
    if isinstance(dtype, StructType):
        return "STRUCT(" + ", ".join(f'"{f.name}" {duckdb_type(f.dataType)}' for f in dtype.fields) + ")"
    for spark_type, name in _SIMPLE_TYPES.items():
        if isinstance(dtype, spark_type):
            return name
    raise TypeError(f"no DuckDB type for {dtype!r}")


def _columns(table: Table) -> list[tuple[str, str]]:
    return [(f.name, duckdb_type(f.dataType)) for f in table.schema.fields]


def _select_list(table: Table) -> str:
    """The table's columns cast to their declared types, in schema order."""
    return ", ".join(f'CAST("{name}" AS {dtype}) AS "{name}"' for name, dtype in _columns(table))


def is_remote(root: str) -> bool:
    """A lake DuckDB cannot read by itself (no httpfs here): anything but a local path."""
    return not lakefs.is_local(root)


def _arrow_partition(table: Table, files: tuple[str, ...]):
    """One partition's files read through pyarrow, as an Arrow table with the data columns only
    (the partition value comes from the log; the folder names are not parsed)."""
    import pyarrow.parquet as pq

    fs, _ = lakefs.filesystem(files[0])
    paths = [lakefs.filesystem(f)[1] for f in files]
    return pq.ParquetDataset(paths, filesystem=fs, partitioning=None).read(columns=list(table.data_columns))


@dataclass(frozen=True)
class PartitionFiles:
    """The committed files of one partition and a signature that changes when any does."""

    value: str
    files: tuple[str, ...]
    signature: str


def _signature(entries: list[tuple[str, int, object]]) -> str:
    digest = hashlib.sha256()
    for path, size, modified in sorted(entries):
        digest.update(f"{path}\0{size}\0{modified}\n".encode())
    return digest.hexdigest()[:32]


def list_partitions(
    root: str, table: Table, as_of: int | datetime | None = None
) -> dict[str, PartitionFiles]:
    """Partition value → the data files of `table` (under the lake `root`) in its newest
    version, or as of a version number or a time (Lake.data_files: the Delta log's answer)."""
    lake = Lake(root)
    if not lake.is_table(table):
        return {}
    grouped: dict[str, list[tuple[str, int, object]]] = {}
    for file in lake.data_files(table, as_of):
        grouped.setdefault(file.partition, []).append((file.uri, file.size, file.modified))
    return {
        value: PartitionFiles(value, tuple(sorted(p for p, _, _ in files)), _signature(files))
        for value, files in grouped.items()
    }


@dataclass
class TableState:
    partitions: int = 0
    rows: int = 0
    first: str | None = None
    last: str | None = None


@dataclass
class RefreshReport:
    seconds: float = 0.0
    changed: dict[str, list[str]] = field(default_factory=dict)  # table → partitions copied
    removed: dict[str, list[str]] = field(default_factory=dict)


class LakeStore:
    """DuckDB over the lake's served tables. Thread-safe: each thread queries through its own
    cursor; `refresh()` may run in a background thread while requests are answered (DuckDB's
    MVCC gives readers the state before or after a partition's copy, never half of it)."""

    def __init__(
        self,
        lake_root: str,
        mode: str = "replica",
        database: str | Path | None = None,
        memory_limit: str = "1GB",
        threads: int = 2,
        tables: Iterable[Table] | None = None,
        as_of: int | datetime | None = None,
    ) -> None:
        """`tables`: the served tables this store holds (default: all); a reader that needs two
        tables of a lake on gs:// then copies only those two on every refresh. `as_of`: every
        table as of that time (or, for a one-table store, that version), for a one-shot
        reader; None: the newest versions."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if as_of is not None and mode == "replica" and database not in (None, ":memory:"):
            raise ValueError("a replica on disk follows the newest versions; read as of in parquet mode")
        self.as_of = as_of
        if mode == "parquet" and is_remote(lake_root):
            mode, database = "replica", ":memory:"  # in place needs httpfs: copy instead
        if mode == "replica" and database is None:
            raise ValueError("replica mode needs a database file")
        self.lake_root = lake_root
        self.mode = mode
        self.database = str(database) if mode == "replica" else ":memory:"
        if mode == "replica" and self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.database)
        except duckdb.IOException as exc:
            raise RuntimeError(
                f"cannot open the serving replica {self.database}: {exc}. Another `funnelpulse serve` "
                "holds it; give this one its own file with --replica PATH."
            ) from exc
        self._con.execute(f"SET memory_limit='{memory_limit}'")
        self._con.execute(f"SET threads={int(threads)}")
        self._con.execute("SET TimeZone='UTC'")
        self._local = threading.local()
        self._refresh_lock = threading.Lock()
        self.last_refresh: float | None = None
        self.tables: tuple[Table, ...] = tuple(tables) if tables is not None else SERVED_TABLES
        self.state: dict[str, TableState] = {t.name: TableState() for t in self.tables}
        self._create_tables()

    # -- connections ------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection (cursors share the database and its cache)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            cursor.execute("SET TimeZone='UTC'")
            self._local.cursor = cursor
        return cursor

    def close(self) -> None:
        self._con.close()

    # -- schema -----------------------------------------------------------------------------
    def _ddl(self, table: Table) -> str:
        columns = ", ".join(f'"{name}" {dtype}' for name, dtype in _columns(table))
        return f'CREATE TABLE "{table.name}" ({columns})'

    def _create_tables(self) -> None:
        con = self._con
        if self.mode == "parquet":
            for table in self.tables:
                self._point_view(con, table, {})
            return
        con.execute("CREATE TABLE IF NOT EXISTS _served_tables (table_name VARCHAR PRIMARY KEY, ddl VARCHAR)")
        con.execute(
            "CREATE TABLE IF NOT EXISTS _served_partitions (table_name VARCHAR, partition_value VARCHAR, "
            "signature VARCHAR, row_count BIGINT, copied_at TIMESTAMP, PRIMARY KEY (table_name, partition_value))"
        )
        for table in self.tables:
            ddl = self._ddl(table)
            known = con.execute(
                "SELECT ddl FROM _served_tables WHERE table_name = ?", [table.name]
            ).fetchone()
            if known and known[0] == ddl:
                continue
            # first start, or tables.py changed the schema: start this table's copy afresh
            con.execute(f'DROP TABLE IF EXISTS "{table.name}"')
            con.execute(ddl)
            con.execute("DELETE FROM _served_partitions WHERE table_name = ?", [table.name])
            con.execute("INSERT OR REPLACE INTO _served_tables VALUES (?, ?)", [table.name, ddl])

    # -- refresh ----------------------------------------------------------------------------
    def refresh(self, tables: Iterable[Table] | None = None) -> RefreshReport:
        """Bring every table this store serves (or those of `tables` it serves) up to date with
        the lake (see the module docstring)."""
        chosen = self.tables if tables is None else [t for t in self.tables if t in tuple(tables)]
        with self._refresh_lock:
            started = time.perf_counter()
            report = RefreshReport()
            con = self._con.cursor()
            con.execute("SET TimeZone='UTC'")
            try:
                for table in chosen:
                    listed = list_partitions(self.lake_root, table, self.as_of)
                    if self.mode == "parquet":
                        self._point_view(con, table, listed)
                    else:
                        self._sync(con, table, listed, report)
                    self._record_state(con, table, listed)
            finally:
                con.close()
            report.seconds = time.perf_counter() - started
            if tables is None:
                self.last_refresh = time.time()
            return report

    def _scan(self, table: Table, files_sql: str, partition_value: str | None = None) -> str:
        """SQL reading the files `files_sql` (a parameter or a list literal) as `table`'s
        columns; the partition value is `partition_value`, else read from the paths."""
        data_columns = ", ".join(f'"{c}"' for c in table.data_columns)
        part = table.partition_column
        source = (
            f"SELECT {data_columns}, '{partition_value}' AS \"{part}\" FROM read_parquet({files_sql}, union_by_name = true)"
            if partition_value is not None
            else f'SELECT {data_columns}, "{part}" FROM read_parquet({files_sql}, hive_partitioning = true, union_by_name = true)'
        )
        return f"SELECT {_select_list(table)} FROM ({source})"

    def _point_view(self, con, table: Table, listed: dict[str, PartitionFiles]) -> None:
        files = [f for p in listed.values() for f in p.files]
        if files:
            # the file list is part of the view (a view cannot take parameters)
            literal = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
            sql = self._scan(table, literal)
        else:
            sql = (
                "SELECT "
                + ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in _columns(table))
                + " WHERE false"
            )
        con.execute(f'CREATE OR REPLACE VIEW "{table.name}" AS {sql}')

    def _sync(self, con, table: Table, listed: dict[str, PartitionFiles], report: RefreshReport) -> None:
        stored = dict(
            con.execute(
                "SELECT partition_value, signature FROM _served_partitions WHERE table_name = ?", [table.name]
            ).fetchall()
        )
        part = table.partition_column
        for value, files in sorted(listed.items()):
            if stored.get(value) == files.signature:
                continue
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f'DELETE FROM "{table.name}" WHERE CAST("{part}" AS VARCHAR) = ?', [value])
                if is_remote(self.lake_root):
                    con.register("_incoming", _arrow_partition(table, files.files))
                    data_columns = ", ".join(f'"{c}"' for c in table.data_columns)
                    source = f"SELECT {data_columns}, '{value}' AS \"{part}\" FROM _incoming"
                    con.execute(f'INSERT INTO "{table.name}" SELECT {_select_list(table)} FROM ({source})')
                    con.unregister("_incoming")
                else:
                    con.execute(
                        f'INSERT INTO "{table.name}" {self._scan(table, "?", value)}',
                        [list(files.files)],
                    )
                rows = con.execute(
                    f'SELECT count(*) FROM "{table.name}" WHERE CAST("{part}" AS VARCHAR) = ?', [value]
                ).fetchone()[0]
                con.execute(
                    "INSERT OR REPLACE INTO _served_partitions VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                    [table.name, value, files.signature, rows],
                )
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            report.changed.setdefault(table.name, []).append(value)
        for value in sorted(set(stored) - set(listed)):
            con.execute("BEGIN TRANSACTION")
            con.execute(f'DELETE FROM "{table.name}" WHERE CAST("{part}" AS VARCHAR) = ?', [value])
            con.execute(
                "DELETE FROM _served_partitions WHERE table_name = ? AND partition_value = ?",
                [table.name, value],
            )
            con.execute("COMMIT")
            report.removed.setdefault(table.name, []).append(value)

    def _record_state(self, con, table: Table, listed: dict[str, PartitionFiles]) -> None:
        values = sorted(listed)
        rows = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
        self.state[table.name] = TableState(
            partitions=len(values),
            rows=rows,
            first=values[0] if values else None,
            last=values[-1] if values else None,
        )


class Refresher:
    """Refreshes the store in a daemon thread: the live open state every `live_interval` seconds
    (its new versions are small, and a watcher wants them at once), everything every `interval`
    seconds. The last error is kept for /health instead of killing the thread."""

    def __init__(self, store: LakeStore, interval: float, live_interval: float = 0.5) -> None:
        self.store = store
        self.interval = interval
        self.live_interval = min(live_interval, interval)
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lake-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        last_full = time.monotonic()
        while not self._stop.wait(self.live_interval):
            try:
                if time.monotonic() - last_full >= self.interval:
                    self.store.refresh()
                    last_full = time.monotonic()
                else:
                    self.store.refresh(LIVE_TABLES)
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - a transient listing error must not stop the refreshes
                self.last_error = f"{type(exc).__name__}: {exc}"
