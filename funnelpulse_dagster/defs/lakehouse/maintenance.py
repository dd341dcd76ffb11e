"""The lake's maintenance job: compact, vacuum and expire every Delta table
(lakehouse/maintenance.py), daily, reporting what it did per table."""

from dagster import (
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from funnelpulse_dagster.lakehouse.lake import DEFAULT_RETENTION_HOURS
from funnelpulse_dagster.lakehouse.maintenance import maintain_lake
from funnelpulse_dagster.resources import LakeResource, SparkResource


class MaintenanceConfig(Config):
    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        description="Versions (and the files they need) younger than this stay readable; older "
        "ones are expired and their unreferenced files deleted.",
    )


@op(
    description="Compact small files (the stream's tables first), remove files no kept version "
    "needs, expire versions older than the retention; per table, what it did."
)
def maintain_lake_tables(
    context: OpExecutionContext, config: MaintenanceConfig, spark: SparkResource, lake: LakeResource
):
    done = maintain_lake(spark.spark_session, lake.plain, config.retention_hours)
    for table in done:
        context.log.info(
            f"{table.table}: {table.files_before} → {table.files_after} data files "
            f"({table.files_compacted} compacted), {table.files_deleted} files deleted, "
            f"{table.log_entries_before} → {table.log_entries_after} log entries"
            + (f"; {', '.join(table.notes)}" if table.notes else "")
        )
    rows = {
        t.table: {
            "version": t.version,
            "data_files": [t.files_before, t.files_after],
            "files_compacted": t.files_compacted,
            "files_deleted": t.files_deleted,
            "log_entries": [t.log_entries_before, t.log_entries_after],
            "oldest_version": t.oldest_version_after,
            "notes": t.notes,
        }
        for t in done
    }
    yield Output(
        None,
        metadata={
            "retention_hours": config.retention_hours,
            "tables_maintained": sum(1 for t in done if t.version >= 0),
            "files_compacted": sum(t.files_compacted for t in done),
            "files_deleted": sum(t.files_deleted for t in done),
            "per_table": MetadataValue.json(rows),
        },
    )


@job(description="Compact, vacuum and expire every lake table (docs/tables.md, 'Versions and maintenance').")
def lake_maintenance_job():
    maintain_lake_tables()


lake_maintenance_schedule = ScheduleDefinition(
    name="lake_maintenance_schedule",
    job=lake_maintenance_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 03:00 UTC, after the daily build: compact, vacuum and expire the lake's tables.",
)
