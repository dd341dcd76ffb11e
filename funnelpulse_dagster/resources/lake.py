"""The lakehouse: where tables live and how a set of daily partitions is read and replaced.

Paths go through Hadoop's FileSystem API in the Spark JVM, so the same code works on a local
disk, HDFS and `gs://` (where Dataproc puts the GCS connector on the classpath).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from funnelpulse_dagster.tables import Table


def _as_uri(root: str) -> str:
    if "://" in root:
        return root.rstrip("/")
    return Path(root).expanduser().resolve().as_uri()


class LakeResource(ConfigurableResource):
    """Root URI of the tables (FUNNELPULSE_LAKE): a path, `file://…` or `gs://bucket/prefix`."""

    root: str = Field(description="Root URI of the Parquet tables.")

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
        if not self.exists(spark, self.table_uri(table)):
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
        directory goes too. Days outside `days` are never touched.
        """
        spark = frame.sparkSession
        wanted = sorted(set(days))
        files_before = {day: self._file_names(spark, self.partition_uri(table, day)) for day in wanted}
        (
            frame.select(*table.schema.fieldNames())
            .write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            # zstd: a third smaller than snappy for the same write time (measured, docs/performance.md)
            .option("compression", "zstd")
            # session ids are near-unique: a dictionary only costs time there
            .option("parquet.enable.dictionary#user_session", "false")
            .partitionBy(table.partition_column)
            .parquet(self.table_uri(table))
        )
        for day, before in files_before.items():
            # a rewritten partition has new file names; unchanged names mean no rows this time
            if before and self._file_names(spark, self.partition_uri(table, day)) == before:
                self.delete(spark, self.partition_uri(table, day))

    def batch_uri(self, table: Table, batch_id: int, staged: bool = False) -> str:
        # names starting with "_" are invisible to Spark's readers and file-stream sources
        where = f"{self.table_uri(table)}/_staging" if staged else self.table_uri(table)
        return f"{where}/{table.partition_column}={batch_id}"

    def stage_batch(self, frame: DataFrame, table: Table, batch_id: int) -> None:
        """Write `frame` to the hidden staging directory of batch `batch_id` (replacing what a
        crashed attempt left there); `commit_batch` makes it visible."""
        (
            frame.select(*table.data_columns)
            .write.mode("overwrite")
            .option("compression", "zstd")
            .parquet(self.batch_uri(table, batch_id, staged=True))
        )

    def commit_batch(self, spark: SparkSession, table: Table, batch_id: int) -> None:
        """Rename a staged batch into place as the partition `<partition_column>=<batch_id>`:
        readers and streaming sources see all of it or none of it (the rename is atomic on a
        local disk and HDFS)."""
        fs, source = self._fs_path(spark, self.batch_uri(table, batch_id, staged=True))
        _, target = self._fs_path(spark, self.batch_uri(table, batch_id))
        if not fs.rename(source, target):
            raise RuntimeError(f"could not move {source} to {target}")

    def batch_published(self, spark: SparkSession, table: Table, batch_id: int) -> bool:
        return self.exists(spark, self.batch_uri(table, batch_id))

    def publish_batch(self, frame: DataFrame, table: Table, batch_id: int) -> bool:
        """Stage and commit `frame` as batch `batch_id`, unless that batch is already published
        (a streaming micro-batch re-run after a crash carries the same rows), so a retry never
        duplicates. False when it was there."""
        spark = frame.sparkSession
        if self.batch_published(spark, table, batch_id):
            return False
        self.stage_batch(frame, table, batch_id)
        self.commit_batch(spark, table, batch_id)
        return True

    # -- counting --------------------------------------------------------------------------
    def partition_counts(self, spark: SparkSession, table: Table, days: Iterable[date]) -> dict[date, int]:
        """Rows per day as stored (Parquet footers make this cheap)."""
        rows = self.read(spark, table, days).groupBy(table.partition_column).count().collect()
        counts = {day: 0 for day in days}
        counts.update({r[0]: r[1] for r in rows})
        return counts

    # -- file system -----------------------------------------------------------------------
    @staticmethod
    def _fs_path(spark: SparkSession, uri: str):
        jvm = spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path

    def _file_names(self, spark: SparkSession, uri: str) -> frozenset[str]:
        fs, path = self._fs_path(spark, uri)
        if not fs.exists(path):
            return frozenset()
        return frozenset(status.getPath().getName() for status in fs.listStatus(path))

    def exists(self, spark: SparkSession, uri: str) -> bool:
        fs, path = self._fs_path(spark, uri)
        return bool(fs.exists(path))

    def make_dirs(self, spark: SparkSession, uri: str) -> None:
        fs, path = self._fs_path(spark, uri)
        fs.mkdirs(path)

    def delete(self, spark: SparkSession, uri: str) -> None:
        fs, path = self._fs_path(spark, uri)
        if fs.exists(path):
            fs.delete(path, True)

    def list_files(self, spark: SparkSession, uri: str, suffix: str) -> list[str]:
        """Files directly under `uri` whose names end with `suffix`, sorted."""
        fs, path = self._fs_path(spark, uri)
        if not fs.exists(path):
            return []
        return sorted(
            status.getPath().toString()
            for status in fs.listStatus(path)
            if status.isFile() and status.getPath().getName().endswith(suffix)
        )

    def read_head(self, spark: SparkSession, uri: str, nbytes: int = 65_536) -> bytes:
        """The first `nbytes` of a file (to find a file's first date without scanning it)."""
        fs, path = self._fs_path(spark, uri)
        stream = fs.open(path)
        try:
            buffer = bytearray()
            while len(buffer) < nbytes:
                chunk = spark.sparkContext._gateway.new_array(spark.sparkContext._jvm.byte, 8192)
                n = stream.read(chunk)
                if n <= 0:
                    break
                buffer.extend(bytes(chunk)[:n])
            return bytes(buffer[:nbytes])
        finally:
            stream.close()
