"""LakeResource: the lake (funnelpulse_dagster.lakehouse.lake) as a Dagster resource, configured by
FUNNELPULSE_LAKE. Every method is the plain `Lake`'s; `plain` hands that object to code that must
not carry a Dagster resource (functions Spark serializes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from dagster import ConfigurableResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from funnelpulse_dagster.lakehouse.lake import Lake, Snapshot
from funnelpulse_dagster.tables import Table


class LakeResource(ConfigurableResource):
    """Root URI of the tables (FUNNELPULSE_LAKE): a path, `file://…` or `gs://bucket/prefix`."""

    root: str = Field(description="Root URI of the lake's Delta tables (FUNNELPULSE_LAKE).")

    @property
    def plain(self) -> Lake:
        return Lake(self.root)

    @property
    def root_uri(self) -> str:
        return self.plain.root_uri

    def table_uri(self, table: Table) -> str:
        return self.plain.table_uri(table)

    def read(
        self,
        spark: SparkSession,
        table: Table,
        days: Iterable[date] | None = None,
        as_of: int | datetime | None = None,
    ) -> DataFrame:
        return self.plain.read(spark, table, days, as_of)

    def replace_partitions(
        self, frame: DataFrame, table: Table, days: Iterable[date], tag: str | None = None
    ) -> None:
        self.plain.replace_partitions(frame, table, days, tag)

    def is_table(self, table: Table) -> bool:
        return self.plain.is_table(table)

    def snapshots(self, table: Table, limit: int | None = None) -> list[Snapshot]:
        return self.plain.snapshots(table, limit)

    def rows_by_partition(self, table: Table, as_of: int | datetime | None = None) -> dict[str, int]:
        return self.plain.rows_by_partition(table, as_of)
