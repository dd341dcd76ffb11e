"""The open-state query's sink: count a micro-batch's new contribution rows, publish one version.

The open-state query (streaming/job.py, `start_open`) is stateless in Spark: per micro-batch it
hands this sink the batch's contribution rows (transforms/live.py, `open_contributions`), each
with its 16-byte de-duplication key and its cell time. The sink keeps what must outlive a batch
beside the query's checkpoint, in files it writes once:

- the *open cells* (minutes × brands of the open hours, small): a Parquet file per version;
- the *keys* of the rows counted so far, while their cell time is within the watermark: a
  Parquet file per micro-batch with the keys that batch counted first. This process holds them
  in an in-memory DuckDB table as well (`_Keys`), read back from the files when it starts or
  when another process has moved the state on.

For micro-batch N:

1. drops the rows at or before the watermark of the batches before N (their newest cell time
   less `WATERMARK_DELAY`, as Spark's watermark) and the rows whose key is already counted: one
   hash anti-join of the batch against the held keys, so its cost follows the batch (the held
   keys are only probed);
2. writes the batch's new keys (file N), adds them to the held keys;
3. adds the new rows' cell totals (`cells_sql`) to the newest cells file before N and drops the
   cells of hours the closed table holds already (their end at least an hour behind the
   watermark; the one hour of overlap is hidden by readers, who start the open hours after the
   last closed one);
4. writes the cells file N, then publishes the state's two tables as version N, each in one
   Delta commit that also drops its versions older than the newest `keep_versions`: the open
   hours per brand, then the minute funnel (readers take the newest version present in both,
   so a state is never seen torn);
5. forgets the keys of the hours the new watermark has passed (held keys and whole key files,
   once an hour) and deletes cells files older than the newest `keep_versions`.

A micro-batch re-run after a crash (Spark replays the same offsets) first forgets any keys
counted by an earlier attempt at N, so it writes the same state; a version whose minute table
is already published is left as it is.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import pyarrow as pa
from pyspark.sql import DataFrame

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.tables import LIVE_MINUTE_FUNNEL, LIVE_OPEN_HOURLY_BRAND, LIVE_TABLES
from funnelpulse_dagster.transforms.live import cell_totals_sql, cells_sql, open_hours_sql, open_minutes_sql
from funnelpulse_dagster.transforms.stream import WATERMARK_HOURS

_EPOCH = datetime(1970, 1, 1)
_KEY_COLUMNS = ("dedup_key", "cell_time")


@dataclass(frozen=True)
class OpenStateSink:
    """A plain, picklable callable: under Spark Connect it runs in a Python worker of the server."""

    lake: Lake
    cells_root: str  # where the cells and keys files live (beside the open-state query's checkpoint)
    minute_window_minutes: int = 1
    top_brands: int = 5
    keep_versions: int = 3  # older states are deleted; a reader copying one has time to finish

    def cells_uri(self, version: int) -> str:
        return f"{self.cells_root.rstrip('/')}/cells-{version:012d}.parquet"

    def cell_versions(self) -> list[int]:
        names = lakefs.child_names(self.cells_root)
        return sorted(int(n[6:18]) for n in names if n.startswith("cells-") and n.endswith(".parquet"))

    def __call__(self, contributions: DataFrame, batch_id: int) -> None:
        published = self.lake.partition_values(LIVE_MINUTE_FUNNEL)  # published last
        if published and max(map(int, published)) >= batch_id:
            return
        for table in LIVE_TABLES:
            self.lake.ensure_table(contributions.sparkSession, table)
        rows = _naive_times(contributions.toArrow())
        keys = _Keys.for_root(self.cells_root)
        with keys.lock:
            keys.load_before(batch_id)
            new = keys.count_new(rows, batch_id)
            earlier = [v for v in self.cell_versions() if v < batch_id]
            previous = _naive_times(lakefs.read_parquet(self.cells_uri(earlier[-1]))) if earlier else None
            cells = merge_cells(previous, cell_totals(new, self.minute_window_minutes))
            if cells.num_rows == 0 and previous is None:
                return  # nothing has arrived yet: no empty state per idle trigger
            self.publish(cells, batch_id)
            keys.forget_passed()

    def publish(self, cells: pa.Table, version: int) -> None:
        import duckdb

        lakefs.write_parquet(cells, self.cells_uri(version))
        with duckdb.connect() as con:
            con.register("cells", cells)
            hours = con.sql(open_hours_sql("cells", version)).to_arrow_table()
            minutes = con.sql(open_minutes_sql("cells", version, self.top_brands)).to_arrow_table()
        for table, rows in ((LIVE_OPEN_HOURLY_BRAND, hours), (LIVE_MINUTE_FUNNEL, minutes)):
            self.lake.replace_version(rows, table, version, self.keep_versions)
        for old in self.cell_versions()[: -self.keep_versions]:
            lakefs.delete_dir(self.cells_uri(old))


class _Keys:
    """The keys counted so far under one cells root, while the watermark has not passed them:
    an in-memory DuckDB table (key, cell time, batch), mirrored by one file per batch
    (`keys-<batch>-<newest cell time, µs>.parquet`) that a new process reads back."""

    _by_root: ClassVar[OrderedDict[str, _Keys]] = OrderedDict()
    _guard = threading.Lock()
    _held_roots = 4  # a process running more streams than this reads the dropped ones back

    def __init__(self, root: str) -> None:
        import duckdb

        self.root = root.rstrip("/")
        self.lock = threading.Lock()
        self.con = duckdb.connect()
        self.con.execute("CREATE TABLE keys (dedup_key BLOB, cell_time TIMESTAMP, batch BIGINT)").fetchall()
        self.files: dict[int, str] = {}  # batch → its keys file's name, as this process knows them
        self.newest: datetime | None = None  # the newest cell time counted: the watermark's base
        self.through: int | None = None  # the newest batch whose keys may be held
        self.kept_from: datetime | None = None  # the keys of earlier hours are forgotten

    @classmethod
    def for_root(cls, root: str) -> _Keys:
        root = root.rstrip("/")
        with cls._guard:
            if root not in cls._by_root:
                cls._by_root[root] = cls(root)
                while len(cls._by_root) > cls._held_roots:
                    cls._by_root.popitem(last=False)
            cls._by_root.move_to_end(root)
            return cls._by_root[root]

    def _files_on_disk(self) -> dict[int, str]:
        names = lakefs.child_names(self.root)
        return {int(n[5:17]): n for n in names if n.startswith("keys-") and n.endswith(".parquet")}

    def load_before(self, batch_id: int) -> None:
        """Hold exactly the keys of the batches before `batch_id` (an earlier attempt at it, or a
        newer state written by another process, is read from the files again)."""
        found = self._files_on_disk()
        for batch, name in found.items():
            if batch >= batch_id:  # an earlier attempt at this batch
                lakefs.delete_dir(f"{self.root}/{name}")
        on_disk = {b: n for b, n in found.items() if b < batch_id}
        if on_disk != {b: n for b, n in self.files.items() if b < batch_id}:
            self.con.execute("DELETE FROM keys").fetchall()
            for name in on_disk.values():
                self._insert(lakefs.read_parquet(f"{self.root}/{name}"))
            self.newest = self.con.execute("SELECT max(cell_time) FROM keys").fetchall()[0][0]
            self.kept_from = None
        elif self.through is not None and self.through >= batch_id:
            self.con.execute("DELETE FROM keys WHERE batch >= ?", [batch_id]).fetchall()
            self.newest = self.con.execute("SELECT max(cell_time) FROM keys").fetchall()[0][0]
        self.files = on_disk
        self.through = batch_id - 1

    def _insert(self, table: pa.Table) -> None:
        self.con.register("loaded", table)
        self.con.execute("INSERT INTO keys SELECT dedup_key, cell_time, batch FROM loaded").fetchall()
        self.con.unregister("loaded")

    def watermark(self) -> datetime | None:
        return self.newest - timedelta(hours=WATERMARK_HOURS) if self.newest is not None else None

    def count_new(self, rows: pa.Table, batch_id: int) -> pa.Table:
        """The rows of batch `batch_id` counted for the first time: after the watermark, one per
        key, keys not held. Their keys are written to the batch's file and held."""
        watermark = self.watermark()
        self.con.register("batch_rows", rows)
        late = "" if watermark is None else "WHERE cell_time > ?"
        new = self.con.sql(
            f"SELECT DISTINCT ON (r.dedup_key) r.* FROM (SELECT * FROM batch_rows {late}) r "
            "ANTI JOIN keys k ON r.dedup_key = k.dedup_key",
            params=[] if watermark is None else [watermark],
        ).to_arrow_table()
        self.con.unregister("batch_rows")
        if new.num_rows:
            counted = new.select(list(_KEY_COLUMNS)).append_column(
                "batch", pa.array([batch_id] * new.num_rows, pa.int64())
            )
            newest = max(counted.column("cell_time").to_pylist())
            name = f"keys-{batch_id:012d}-{_micros(newest):017d}.parquet"
            lakefs.write_parquet(counted, f"{self.root}/{name}")
            self._insert(counted)
            self.files[batch_id] = name
            self.through = batch_id
            self.newest = newest if self.newest is None else max(self.newest, newest)
        return new

    def forget_passed(self) -> None:
        """Drop the keys of the hours before the watermark's hour, and the files holding
        nothing newer: once an hour, so no micro-batch scans the held keys. (A key kept past the
        watermark changes nothing: rows at or before the watermark are not counted.)"""
        watermark = self.watermark()
        if watermark is None:
            return
        kept_from = watermark.replace(minute=0, second=0, microsecond=0)
        if self.kept_from is not None and kept_from <= self.kept_from:
            return
        self.con.execute("DELETE FROM keys WHERE cell_time < ?", [kept_from]).fetchall()
        self.kept_from = kept_from
        for batch, name in list(self.files.items()):
            if int(name[18:35]) < _micros(kept_from):
                lakefs.delete_dir(f"{self.root}/{name}")
                del self.files[batch]


def held_keys(cells_root: str) -> int:
    """How many keys this process holds for the open state under `cells_root`."""
    keys = _Keys.for_root(cells_root)
    with keys.lock:
        return keys.con.execute("SELECT count(*) FROM keys").fetchall()[0][0]


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _naive_times(table: pa.Table) -> pa.Table:
    """Timestamps as naive UTC wall-clock times (the session time zone is UTC), so DuckDB's hour
    and minute arithmetic never depends on its own time zone setting."""
    fields = [
        pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def cell_totals(contributions: pa.Table, minutes: int = 1) -> pa.Table:
    """Contribution rows (each key once) → their totals per (minute cell, scope)."""
    import duckdb

    with duckdb.connect() as con:
        con.register("contributions", contributions)
        return con.sql(cells_sql("contributions", minutes)).to_arrow_table()


def merge_cells(previous: pa.Table | None, new: pa.Table) -> pa.Table:
    """The open cells after a micro-batch: `previous` plus the batch's `new` totals, cell by
    cell, less the cells of hours closed at least an hour ago (the watermark is
    `WATERMARK_HOURS` behind the newest event)."""
    import duckdb

    with duckdb.connect() as con:
        con.register("new", new)
        both = "new"
        if previous is not None:
            con.register("previous", previous)
            both = "(SELECT * FROM previous UNION ALL BY NAME SELECT * FROM new)"
        keep_after = timedelta(hours=WATERMARK_HOURS + 1)
        return con.sql(
            f"WITH merged AS ({cell_totals_sql(both)}) SELECT * FROM merged WHERE "
            f"date_trunc('hour', window_start) + INTERVAL 1 HOUR > "
            f"(SELECT max(newest_event_time) FROM merged) - INTERVAL {int(keep_after.total_seconds())} SECOND "
            f"ORDER BY window_start, is_shop, scope"
        ).to_arrow_table()
