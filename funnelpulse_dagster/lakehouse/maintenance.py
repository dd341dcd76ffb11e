"""Keeping the lake's Delta tables lean: compact small files, remove files no kept version needs,
expire old versions. The maintenance job (defs/lakehouse/maintenance.py) runs it on a schedule.

Per table, in this order:
1. **Compact** (Spark's `OPTIMIZE`): within each partition, many small files become few. The
   stream's tables gather a file per micro-batch and are compacted first. The commit changes no
   data (`dataChange=false`), so the streaming queries that read these tables skip it. The open
   state is left out: each of its versions is one file per table already, and it is rewritten
   every micro-batch.
2. **Remove unreferenced files** (`VACUUM`): files that no version within the retention needs
   (replaced partitions, compacted files, leftovers of failed writes) and that are older than
   the retention are deleted. Reading as of a time inside the retention keeps working.
3. **Expire old versions** (delta-rs): a checkpoint of the newest version, then the log entries
   older than the retention are deleted; versions before that can no longer be read.

Retention defaults to a week (lake.DEFAULT_RETENTION_HOURS); it is also written into each
table's properties, which Delta's own log clean-up follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import DELTA, DELTA_LOG, Lake, table_properties
from funnelpulse_dagster.tables import LAKE_TABLES, LIVE_TABLES, STREAM_TABLES, Table

# the stream's tables first: they gather the most small files
MAINTENANCE_ORDER: tuple[Table, ...] = (
    *[t for t in STREAM_TABLES.values() if t not in LIVE_TABLES],
    *LIVE_TABLES,
    *[t for t in LAKE_TABLES.values() if t.name not in STREAM_TABLES],
)
NOT_COMPACTED = frozenset(t.name for t in LIVE_TABLES)


@dataclass
class TableMaintenance:
    """What maintenance did to one table."""

    table: str
    version: int = -1
    files_before: int = 0  # data files of the newest version
    files_after: int = 0
    files_compacted: int = 0  # removed by compaction
    files_on_disk_before: int = 0  # every Parquet file under the folder, referenced or not
    files_on_disk_after: int = 0
    log_entries_before: int = 0  # commit files in _delta_log
    log_entries_after: int = 0
    oldest_version_after: int = -1
    notes: list[str] = field(default_factory=list)

    @property
    def files_deleted(self) -> int:
        return self.files_on_disk_before - self.files_on_disk_after


def _parquet_files(lake: Lake, table: Table) -> int:
    """Data files on disk, referenced or not (the log's checkpoints left out)."""
    return sum(1 for f in lakefs.list_tree(lake.table_uri(table), ".parquet") if f"/{DELTA_LOG}/" not in f.uri)


def _log_entries(lake: Lake, table: Table) -> int:
    return sum(1 for n in lakefs.child_names(f"{lake.table_uri(table)}/{DELTA_LOG}") if n.endswith(".json"))


def maintain_table(spark: SparkSession, lake: Lake, table: Table, retention_hours: int) -> TableMaintenance:
    """Compact, vacuum and expire one table (see the module docstring)."""
    done = TableMaintenance(table.name)
    if not lake.is_table(table):
        done.notes.append("no table yet")
        return done
    path = f"{DELTA}.`{lake.table_uri(table)}`"
    done.files_before = len(lake.data_files(table))
    done.files_on_disk_before = _parquet_files(lake, table)
    done.log_entries_before = _log_entries(lake, table)
    properties = ", ".join(f"'{k}' = '{v}'" for k, v in table_properties(retention_hours).items())
    spark.sql(f"ALTER TABLE {path} SET TBLPROPERTIES ({properties})")
    if table.name not in NOT_COMPACTED:
        metrics = spark.sql(f"OPTIMIZE {path}").first()["metrics"]
        done.files_compacted = int(metrics["numFilesRemoved"])
    spark.sql(f"VACUUM {path} RETAIN {int(retention_hours)} HOURS")
    delta = lake.delta_table(table)
    delta.create_checkpoint()
    delta.cleanup_metadata()
    done.version = delta.version()
    done.files_after = len(lake.data_files(table))
    done.files_on_disk_after = _parquet_files(lake, table)
    done.log_entries_after = _log_entries(lake, table)
    history = lake.snapshots(table)
    done.oldest_version_after = min((s.version for s in history), default=-1)
    return done


def maintain_lake(
    spark: SparkSession, lake: Lake, retention_hours: int, tables: tuple[Table, ...] = MAINTENANCE_ORDER
) -> list[TableMaintenance]:
    """`maintain_table` for every table, the stream's first. A retention under a week needs
    Delta's safety check off, which this session then has.

    VACUUM lists a table's folders with one Spark task per folder up to Spark's partition
    discovery parallelism (10,000 by default): on a small machine those tasks cost a table
    twenty seconds. While maintenance runs, the listing gets the session's shuffle partitions."""
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", str(retention_hours >= 168).lower())
    listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    before = spark.conf.get(listing)
    spark.conf.set(listing, spark.conf.get("spark.sql.shuffle.partitions"))
    try:
        return [maintain_table(spark, lake, table, retention_hours) for table in tables]
    finally:
        spark.conf.set(listing, before)
