"""The lakehouse: where tables live and how a set of daily partitions is read and replaced.

Spark reads and writes the data; file operations around it (does a table exist, which files a
partition holds, delete a partition, publish a staged batch) go through pyarrow's filesystems
(funnelpulse_dagster.lakehouse.lakefs), so nothing here needs the Spark JVM from Python and the same code
runs in-process and against a Spark Connect server, on a local disk and on `gs://`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.tables import Table

# Columns whose values seldom repeat within a day. Parquet's dictionary encoding hashes every
# value and then, for these, either gives up or keeps a dictionary nearly as long as the column;
# written plain, zstd packs them smaller and the writer spends less time (`benchmarks/batch.py`
# times the writes). A column a table lacks is ignored.
PLAIN_ENCODED_COLUMNS = ("event_time", "product_id", "category_id", "user_id", "user_session")

# Every Parquet write's settings: the lake's own writes and the streaming job's file sink.
PARQUET_OPTIONS = {
    # zstd: smaller files than snappy for the same write time
    "compression": "zstd",
    **{f"parquet.enable.dictionary#{column}": "false" for column in PLAIN_ENCODED_COLUMNS},
}


def _parquet_writer(frame: DataFrame) -> DataFrameWriter:
    """A Parquet write with PARQUET_OPTIONS that replaces what it targets."""
    return frame.write.mode("overwrite").options(**PARQUET_OPTIONS)


def _as_uri(root: str) -> str:
    if "://" in root:
        return root.rstrip("/")
    return Path(root).expanduser().resolve().as_uri()


@dataclass(frozen=True)
class Lake:
    """The tables under `root` (FUNNELPULSE_LAKE): a path, `file://…` or `gs://bucket/prefix`.

    A plain object (no Dagster): streaming's foreachBatch function carries it to wherever Spark
    runs it, which under Spark Connect is a Python worker of the server."""

    root: str

    @property
    def root_uri(self) -> str:
        return _as_uri(self.root)

    def table_uri(self, table: Table) -> str:
        return f"{self.root_uri}/{table.name}"

    def partition_uri(self, table: Table, day: date) -> str:
        return f"{self.table_uri(table)}/{table.partition_column}={day.isoformat()}"

    # -- reading ---------------------------------------------------------------------------
    def read(self, spark: SparkSession, table: Table, days: Iterable[date] | None = None) -> DataFrame:
        """The table with its declared schema, pruned to `days` (all days when None).

        A table that does not exist yet reads as empty, so a downstream asset over days with
        no upstream data writes empty partitions instead of failing.
        """
        if not self.exists(self.table_uri(table)):
            frame = spark.createDataFrame([], table.schema)
        else:
            frame = spark.read.schema(table.schema).parquet(self.table_uri(table))
        if days is not None:
            frame = frame.filter(F.col(table.partition_column).isin(sorted(set(days))))
        return frame

    # -- writing ---------------------------------------------------------------------------
    def replace_partitions(self, frame: DataFrame, table: Table, days: Iterable[date]) -> None:
        """Make the partitions `days` of `table` hold exactly `frame`'s rows.

        The caller's frame holds rows of `days` only (the reconciliation checks prove it after
        every write). Dynamic partition overwrite replaces the day directories present in the
        output; a requested day with no rows this time must not keep its old data, so its
        directory goes too. Days outside `days` are never touched. A table marked
        `file_per_partition` (the gold aggregates) gets one file per day.
        """
        wanted = sorted(set(days))
        files_before = {day: lakefs.child_names(self.partition_uri(table, day)) for day in wanted}
        if table.file_per_partition:
            # each day's rows to one task: one file per day instead of one per day and task
            frame = frame.repartition(table.partition_column)
        (
            _parquet_writer(frame.select(*table.schema.fieldNames()))
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy(table.partition_column)
            .parquet(self.table_uri(table))
        )
        for day, before in files_before.items():
            # a rewritten partition has new file names; unchanged names mean no rows this time
            if before and lakefs.child_names(self.partition_uri(table, day)) == before:
                self.delete(self.partition_uri(table, day))

    def batch_uri(self, table: Table, batch_id: int, staged: bool = False) -> str:
        # names starting with "_" are invisible to Spark's readers and file-stream sources
        where = f"{self.table_uri(table)}/_staging" if staged else self.table_uri(table)
        return f"{where}/{table.partition_column}={batch_id}"

    def stage_batch(self, frame: DataFrame, table: Table, batch_id: int) -> None:
        """Write `frame` to the hidden staging directory of batch `batch_id` (replacing what a
        crashed attempt left there); `commit_batch` makes it visible."""
        _parquet_writer(frame.select(*table.data_columns)).parquet(
            self.batch_uri(table, batch_id, staged=True)
        )

    def stage_arrow_batch(self, rows, table: Table, batch_id: int) -> None:
        """`stage_batch` for a small Arrow table written from this process (no Spark job): the
        table's data columns, with Spark's types, as one file."""
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(StructType([table.schema[c] for c in table.data_columns]))
        staged = self.batch_uri(table, batch_id, staged=True)
        lakefs.delete_dir(staged)
        lakefs.write_parquet(rows.select(schema.names).cast(schema), f"{staged}/part-00000.parquet")

    def commit_batch(self, table: Table, batch_id: int) -> None:
        """Rename a staged batch into place as the partition `<partition_column>=<batch_id>`:
        readers and streaming sources see all of it or none of it (the rename is atomic on a
        local disk)."""
        lakefs.move(self.batch_uri(table, batch_id, staged=True), self.batch_uri(table, batch_id))

    def batch_ids(self, table: Table) -> list[int]:
        """The batch ids published to a batch-partitioned table, in order."""
        prefix = f"{table.partition_column}="
        return sorted(int(n.removeprefix(prefix)) for n in self.child_names(table) if n.startswith(prefix))

    def batch_published(self, table: Table, batch_id: int) -> bool:
        return self.exists(self.batch_uri(table, batch_id))

    def publish_batch(self, frame: DataFrame, table: Table, batch_id: int) -> bool:
        """Stage and commit `frame` as batch `batch_id`, unless that batch is already published
        (a streaming micro-batch re-run after a crash carries the same rows), so a retry never
        duplicates. False when it was there."""
        if self.batch_published(table, batch_id):
            return False
        self.stage_batch(frame, table, batch_id)
        self.commit_batch(table, batch_id)
        return True

    # -- file system -----------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        return lakefs.exists(uri)

    def make_dirs(self, uri: str) -> None:
        lakefs.make_dirs(uri)

    def child_names(self, table: Table) -> frozenset[str]:
        """Names directly under the table's folder (its partitions, and hidden entries)."""
        return lakefs.child_names(self.table_uri(table))

    def delete(self, uri: str) -> None:
        lakefs.delete_dir(uri)
