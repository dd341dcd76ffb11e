"""The open-state query's sink: merge a micro-batch's updated minute cells, publish one version.

The open-state query (streaming/job.py, `start_open`) emits, per micro-batch, only the minute
cells the batch touched, each with its running totals (transforms/live.py). This sink keeps the
whole set of open cells, small (minutes × brands of the open hours), as a Parquet file per
version beside the query's checkpoint, and for micro-batch N:

1. reads the newest cells file before N and replaces the cells the batch updated (DuckDB,
   in this process: the data is small, and a Spark job per step would cost more than the work);
2. drops the cells of hours the closed table holds already (their end at least an hour behind
   the watermark; the one hour of overlap is hidden by readers, who start the open hours after
   the last closed one);
3. writes the cells file N, then publishes the state's two tables as version N, each in one
   Delta commit that also drops its versions older than the newest `keep_versions`: the open
   hours per brand, then the minute funnel (readers take the newest version present in both,
   so a state is never seen torn);
4. deletes cells files older than the newest `keep_versions`.

A micro-batch re-run after a crash replays the same updates (Spark's state store is at the same
version) onto the same cells file N-1, so it writes the same state; a version whose minute table
is already published is left as it is. Nothing here grows with the number of events in an hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa
from pyspark.sql import DataFrame

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.tables import LIVE_MINUTE_FUNNEL, LIVE_OPEN_HOURLY_BRAND, LIVE_TABLES
from funnelpulse_dagster.transforms.live import open_hours_sql, open_minutes_sql
from funnelpulse_dagster.transforms.stream import WATERMARK_HOURS

_CELL_KEY = ("window_start", "is_shop", "scope")


@dataclass(frozen=True)
class OpenStateSink:
    """A plain, picklable callable: under Spark Connect it runs in a Python worker of the server."""

    lake: Lake
    cells_root: str  # where the cells files live (beside the open-state query's checkpoint)
    top_brands: int = 5
    keep_versions: int = 3  # older states are deleted; a reader copying one has time to finish

    def cells_uri(self, version: int) -> str:
        return f"{self.cells_root.rstrip('/')}/cells-{version:012d}.parquet"

    def cell_versions(self) -> list[int]:
        names = lakefs.child_names(self.cells_root)
        return sorted(int(n[6:18]) for n in names if n.startswith("cells-") and n.endswith(".parquet"))

    def __call__(self, updates: DataFrame, batch_id: int) -> None:
        published = self.lake.partition_values(LIVE_MINUTE_FUNNEL)  # published last
        if published and max(map(int, published)) >= batch_id:
            return
        for table in LIVE_TABLES:
            self.lake.ensure_table(updates.sparkSession, table)
        changed = _naive_times(updates.toArrow())
        earlier = [v for v in self.cell_versions() if v < batch_id]
        previous = _naive_times(lakefs.read_parquet(self.cells_uri(earlier[-1]))) if earlier else None
        cells = merge_cells(previous, changed)
        if cells.num_rows == 0 and previous is None:
            return  # nothing has arrived yet: no empty state per idle trigger
        self.publish(cells, batch_id)

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


def _naive_times(table: pa.Table) -> pa.Table:
    """Timestamps as naive UTC wall-clock times (the session time zone is UTC), so DuckDB's hour
    and minute arithmetic never depends on its own time zone setting."""
    fields = [
        pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def merge_cells(previous: pa.Table | None, changed: pa.Table) -> pa.Table:
    """The open cells after a micro-batch: `previous` with every cell in `changed` replaced by
    its new running totals, less the cells of hours closed at least an hour ago (the watermark
    is `WATERMARK_HOURS` behind the newest event)."""
    import duckdb

    with duckdb.connect() as con:
        con.register("changed", changed)
        if previous is None:
            merged = "SELECT * FROM changed"
        else:
            con.register("previous", previous.select(changed.schema.names).cast(changed.schema))
            same = " AND ".join(f"p.{c} IS NOT DISTINCT FROM c.{c}" for c in _CELL_KEY)
            merged = (
                "SELECT * FROM changed UNION ALL BY NAME "
                f"SELECT * FROM previous p WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE {same})"
            )
        keep_after = timedelta(hours=WATERMARK_HOURS + 1)
        return con.sql(
            f"WITH merged AS ({merged}) SELECT * FROM merged WHERE "
            f"date_trunc('hour', window_start) + INTERVAL 1 HOUR > "
            f"(SELECT max(newest_event_time) FROM merged) - INTERVAL {int(keep_after.total_seconds())} SECOND "
            f"ORDER BY window_start, is_shop, scope"
        ).to_arrow_table()
