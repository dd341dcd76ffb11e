"""The lakehouse: every table a Delta Lake table, and how a set of its partitions is read and
replaced in one atomic commit.

Spark reads and writes the data (`format("delta")`, path-based tables under the lake's root, no
catalog service). Everything else goes through `deltalake` (delta-rs) and pyarrow from Python,
never through the Spark JVM: which versions a table has, what a commit changed, whether a
streaming batch is already committed. So the same code runs in-process and against a Spark
Connect server, on a local disk and on `gs://`.

Why Delta, and what each write commits: docs/architecture.md ("Table format").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.tables import Table, column_description

DELTA = "delta"
DELTA_LOG = "_delta_log"
# A week of versions to read as of, and of files an older version still needs (the
# maintenance job's VACUUM keeps what this window references; docs/tables.md, "Versions").
DEFAULT_RETENTION_HOURS = 7 * 24


def table_properties(retention_hours: int = DEFAULT_RETENTION_HOURS) -> dict[str, str]:
    """The Delta properties every lake table is created with (the maintenance job sets them to
    its retention)."""
    return {
        "delta.logRetentionDuration": f"interval {int(retention_hours)} hours",
        "delta.deletedFileRetentionDuration": f"interval {int(retention_hours)} hours",
        # No per-column min/max statistics, only each file's row count (which the readers'
        # counts use): every read here prunes by partition, and computing min/max of every
        # column made a write of 3 M event rows a third slower.
        "delta.dataSkippingNumIndexedCols": "0",
    }


@dataclass(frozen=True)
class TaggedCommit:
    """A run's commits to one table (Lake.tagged_commit)."""

    snapshot: Snapshot  # the last of them
    rows_before: Mapping[str, int]  # partition value → rows, before the first of them
    rows_after: Mapping[str, int]  # the same after the last
    previous_at: datetime | None  # when the version before them was committed (None: a new table)


class LegacyParquetTable(RuntimeError):
    """A table folder written by a FunnelPulse before the lake moved to Delta Lake."""


def _as_uri(root: str) -> str:
    if "://" in root:
        return root.rstrip("/")
    return Path(root).expanduser().resolve().as_uri()


def _sql_literal(value: object) -> str:
    if isinstance(value, date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _ddl(table: Table) -> str:
    columns = []
    for field in table.schema.fields:
        comment = column_description(table, field.name)
        text = f"`{field.name}` {field.dataType.simpleString()}"
        if comment:
            text += " COMMENT " + _sql_literal(comment)
        columns.append(text)
    return ", ".join(columns)


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version: its partition value (as text), URI (a local path on
    a local lake) and what the log says of it."""

    partition: str
    uri: str
    size: int
    modified: object
    rows: int


@dataclass(frozen=True)
class Snapshot:
    """One version of a table and what its commit did."""

    version: int
    timestamp: datetime | None
    operation: str
    metrics: Mapping[str, object]
    tag: str | None  # the writer's userMetadata: the Dagster run id of a materialization


@dataclass(frozen=True)
class Lake:
    """The tables under `root` (FUNNELPULSE_LAKE): a path, `file://…` or `gs://bucket/prefix`.

    A plain object (no Dagster): streaming's foreachBatch functions carry it to wherever Spark
    runs them, which under Spark Connect is a Python worker of the server."""

    root: str

    @property
    def root_uri(self) -> str:
        return _as_uri(self.root)

    def table_uri(self, table: Table) -> str:
        return f"{self.root_uri}/{table.name}"

    # -- the format, from Python -----------------------------------------------------------
    def _location(self, table: Table) -> str:
        """The table's URI as delta-rs takes it (a local path, or the bucket URI)."""
        uri = self.table_uri(table)
        return lakefs.local_path(uri) if lakefs.is_local(uri) else uri

    def delta_table(self, table: Table, version: int | datetime | None = None):
        """The table as `deltalake.DeltaTable` (at `version`: a version number or a time), to read
        its log. A remote table's log is read from a local mirror (`_mirrored_log`); its data
        file URIs come from `data_files`, which joins them to the remote root."""
        from deltalake import DeltaTable

        uri = self.table_uri(table)
        location = self._location(table) if lakefs.is_local(uri) else self._mirrored_log(table)
        if isinstance(version, datetime):
            loaded = DeltaTable(location)
            loaded.load_as_version(version)
            return loaded
        return DeltaTable(location, version=version)

    def _mirrored_log(self, table: Table) -> str:
        """A local copy of a remote table's `_delta_log`, brought up to date (log files never
        change once written: new ones are copied, removed ones removed), read through pyarrow's
        filesystems like every other remote file here. Why: delta-rs's own GCS client speaks
        the XML API, which GCS emulators do not serve; pyarrow's speaks the JSON API both do."""
        import hashlib
        import tempfile

        uri = self.table_uri(table)
        mirror = (
            Path(tempfile.gettempdir())
            / "funnelpulse-delta-logs"
            / hashlib.sha256(uri.encode()).hexdigest()[:20]
        )
        log = mirror / DELTA_LOG
        log.mkdir(parents=True, exist_ok=True)
        remote = {e.name: e for e in lakefs.list_files(f"{uri}/{DELTA_LOG}", (".json", ".parquet", ".crc"))}
        for name in {p.name for p in log.iterdir()} - set(remote):
            (log / name).unlink(missing_ok=True)
        for name, entry in remote.items():
            target = log / name
            if not target.exists() or target.stat().st_size != entry.size:
                fs, path = lakefs.filesystem(entry.uri)
                with fs.open_input_stream(path) as stream:
                    partial = target.with_name(f".{name}.partial")
                    partial.write_bytes(stream.read())
                    partial.replace(target)
        return str(mirror)

    def is_table(self, table: Table) -> bool:
        """True once the table has a commit; a folder of plain Parquet files raises."""
        log = lakefs.child_names(f"{self.table_uri(table)}/{DELTA_LOG}")
        if any(name.endswith((".json", ".checkpoint.parquet")) for name in log):
            return True
        if log:  # the first commit is being written
            return False
        leftovers = {n for n in lakefs.child_names(self.table_uri(table)) if not n.startswith((".", "_"))}
        if leftovers:
            raise LegacyParquetTable(
                f"{self.table_uri(table)} holds plain Parquet files, not a Delta table: the lake was "
                "written by an older FunnelPulse. Rebuild it from the landing files with "
                "`funnelpulse lake rebuild` (docs/tables.md, 'Upgrading a lake of plain Parquet tables')."
            )
        return False

    def snapshots(self, table: Table, limit: int | None = None) -> list[Snapshot]:
        """The table's versions, newest first (those the log still holds)."""
        if not self.is_table(table):
            return []
        found = []
        for entry in self.delta_table(table).history(limit):
            stamp = entry.get("timestamp")
            found.append(
                Snapshot(
                    version=int(entry["version"]),
                    timestamp=datetime.fromtimestamp(stamp / 1000, tz=UTC) if stamp else None,
                    operation=str(entry.get("operation", "")),
                    metrics=entry.get("operationMetrics") or {},
                    tag=entry.get("userMetadata"),
                )
            )
        return found

    def committed_version(self, table: Table, tag: str) -> int | None:
        """The newest version a commit tagged `tag` made (None: none among the newest 100)."""
        return next((s.version for s in self.snapshots(table, 100) if s.tag == tag), None)

    def tagged_commit(self, table: Table, tag: str) -> TaggedCommit | None:
        """What the commits tagged `tag` (one run's writes) did to `table`: rows per partition
        in the version before the first of them and after the last, and when that earlier
        version was made. None when no commit carries the tag (among the newest 100)."""
        history = self.snapshots(table, 100)
        tagged = [s for s in history if s.tag == tag]
        if not tagged:
            return None
        newest, first = tagged[0], tagged[-1]
        previous = next((s for s in history if s.version == first.version - 1), None)
        return TaggedCommit(
            snapshot=newest,
            rows_before=self.rows_by_partition(table, first.version - 1),
            rows_after=self.rows_by_partition(table, newest.version),
            previous_at=previous.timestamp if previous and previous.operation != "CREATE TABLE" else None,
        )

    def unchanged(self, table: Table) -> TaggedCommit:
        """What a write that committed nothing (no row to add or remove) left: the newest
        version, rows as they are, operation `NO CHANGE`."""
        (newest,) = self.snapshots(table, 1)
        rows = self.rows_by_partition(table, newest.version)
        return TaggedCommit(
            snapshot=Snapshot(newest.version, newest.timestamp, "NO CHANGE", {}, None),
            rows_before=rows,
            rows_after=rows,
            previous_at=None,
        )

    def data_files(self, table: Table, as_of: int | datetime | None = None) -> list[DataFile]:
        """The data files of the newest version (or of one as of a version number or a time),
        from the log's add actions: never a file of an older version or a failed write."""
        import pyarrow as pa

        actions = pa.table(self.delta_table(table, as_of).get_add_actions(flatten=True)).to_pydict()
        base = self._location(table)
        return [
            DataFile(
                partition=value.isoformat() if isinstance(value, date) else str(value),
                uri=f"{base}/{unquote(path)}",
                size=int(size),
                modified=modified,
                rows=int(rows or 0),
            )
            for path, size, modified, rows, value in zip(
                actions["path"],
                actions["size_bytes"],
                actions["modification_time"],
                actions["num_records"],
                actions[f"partition.{table.partition_column}"],
                strict=True,
            )
        ]

    def rows_by_partition(self, table: Table, as_of: int | datetime | None = None) -> dict[str, int]:
        """Rows per partition value (as text) in a version, from the log's file statistics:
        no data file is read. A version before the table's first is empty."""
        if isinstance(as_of, int) and as_of < 0:
            return {}
        rows: dict[str, int] = {}
        for file in self.data_files(table, as_of):
            rows[file.partition] = rows.get(file.partition, 0) + file.rows
        return rows

    def committed_batch(self, table: Table, app_id: str) -> int:
        """The last streaming batch `app_id` committed to `table` (-1 for none): Delta keeps it
        in the log (the `txnAppId` / `txnVersion` write options), so a re-run batch is known."""
        if not self.is_table(table):
            return -1
        version = self.delta_table(table).transaction_version(app_id)
        return -1 if version is None else int(version)

    # -- reading ---------------------------------------------------------------------------
    def read(
        self,
        spark: SparkSession,
        table: Table,
        days: Iterable[date] | None = None,
        as_of: int | datetime | None = None,
    ) -> DataFrame:
        """The table's columns in declared order, pruned to `days` (all days when None), as of
        a version number or a time (the newest version when None).

        A table that does not exist yet reads as empty, so a downstream asset over days with
        no upstream data writes empty partitions instead of failing.
        """
        if not self.is_table(table):
            frame = spark.createDataFrame([], table.schema)
        else:
            reader = spark.read.format(DELTA)
            if isinstance(as_of, datetime):
                reader = reader.option("timestampAsOf", as_of.isoformat(sep=" "))
            elif as_of is not None:
                reader = reader.option("versionAsOf", int(as_of))
            frame = reader.load(self.table_uri(table)).select(*table.schema.fieldNames())
        if days is not None:
            frame = frame.filter(F.col(table.partition_column).isin(sorted(set(days))))
        return frame

    # -- writing ---------------------------------------------------------------------------
    def ensure_table(self, spark: SparkSession, table: Table) -> None:
        """Create the table (its declared schema, column comments, partitioning and
        properties) unless it exists."""
        if self.is_table(table):
            return
        properties = ", ".join(
            f"{_sql_literal(k)} = {_sql_literal(v)}" for k, v in table_properties().items()
        )
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {DELTA}.`{self.table_uri(table)}` ({_ddl(table)}) USING {DELTA} "
            f"PARTITIONED BY (`{table.partition_column}`) TBLPROPERTIES ({properties})"
        )

    def replace_partitions(
        self, frame: DataFrame, table: Table, days: Iterable[date], tag: str | None = None
    ) -> None:
        """Make the partitions `days` of `table` hold exactly `frame`'s rows, in one commit.

        Delta's `replaceWhere` removes every file of those days and adds the new ones
        atomically: a reader sees the old days or the new ones, never a mix, and a requested
        day with no rows this time ends up empty. Delta also rejects the write if `frame`
        holds a row of another day. Days outside `days` are never touched. `tag` is recorded as
        the commit's userMetadata (a materialization passes its run id). A table marked
        `file_per_partition` (the gold aggregates) gets one file per day.
        """
        wanted = sorted(set(days))
        if not wanted:
            return
        self.ensure_table(frame.sparkSession, table)
        if table.file_per_partition:
            # each day's rows to one task: one file per day instead of one per day and task
            frame = frame.repartition(table.partition_column)
        predicate = f"`{table.partition_column}` IN ({', '.join(_sql_literal(d) for d in wanted)})"
        self.replace_where(frame, table, predicate, tag)

    def replace_where(self, frame: DataFrame, table: Table, predicate: str, tag: str | None = None) -> None:
        """Make the rows of `table` that match `predicate` (SQL over its partition column) exactly
        `frame`'s rows, in one commit; Delta rejects a row of `frame` that does not match."""
        self.ensure_table(frame.sparkSession, table)
        writer = (
            frame.select(*table.schema.fieldNames())
            .write.format(DELTA)
            .mode("overwrite")
            .option("replaceWhere", predicate)
        )
        if tag:
            writer = writer.option("userMetadata", tag)
        writer.save(self.table_uri(table))

    def append_batch(self, frame: DataFrame, table: Table, app_id: str, batch_id: int) -> None:
        """Append a streaming micro-batch's rows in one commit that Delta makes idempotent: a
        batch re-run after a crash (same `app_id`, same `batch_id`) adds nothing."""
        self.ensure_table(frame.sparkSession, table)
        (
            frame.select(*table.schema.fieldNames())
            .write.format(DELTA)
            .mode("append")
            .option("txnAppId", app_id)
            .option("txnVersion", str(batch_id))
            .save(self.table_uri(table))
        )

    def replace_version(self, rows, table: Table, version: int, keep: int) -> None:
        """Write a small Arrow table (no Spark job) as partition `version` of a table
        partitioned by version, and drop the versions older than the newest `keep`, in one
        commit: readers see the previous state or this one. Writing the same version again
        replaces it (a re-run micro-batch)."""
        from deltalake import write_deltalake
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(table.schema)
        column = table.partition_column
        write_deltalake(
            self._location(table),
            rows.select(schema.names).cast(schema),
            mode="overwrite",
            partition_by=[column],
            predicate=f"{column} = {int(version)} OR {column} <= {int(version) - keep}",
            configuration=table_properties(),
            storage_options=lakefs.delta_storage_options(self.table_uri(table)),
        )

    def partition_values(self, table: Table) -> list[str]:
        """The partition values the newest version holds (as text), in order."""
        if not self.is_table(table):
            return []
        return sorted(self.rows_by_partition(table))
