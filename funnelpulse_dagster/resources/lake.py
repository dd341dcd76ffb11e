"""LakeResource: the lake (funnelpulse_dagster.lakehouse.lake) as a Dagster resource, configured by
FUNNELPULSE_LAKE. Every method is the plain `Lake`'s; `plain` hands that object to code that must
not carry a Dagster resource (functions Spark serializes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from dagster import ConfigurableResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.tables import Table


class LakeResource(ConfigurableResource):
    """Root URI of the tables (FUNNELPULSE_LAKE): a path, `file://…` or `gs://bucket/prefix`."""

    root: str = Field(description="Root URI of the Parquet tables (FUNNELPULSE_LAKE).")

    @property
    def plain(self) -> Lake:
        return Lake(self.root)

    @property
    def root_uri(self) -> str:
        return self.plain.root_uri

    def table_uri(self, table: Table) -> str:
        return self.plain.table_uri(table)

    def partition_uri(self, table: Table, day: date) -> str:
        return self.plain.partition_uri(table, day)

    def read(self, spark: SparkSession, table: Table, days: Iterable[date] | None = None) -> DataFrame:
        return self.plain.read(spark, table, days)

    def replace_partitions(self, frame: DataFrame, table: Table, days: Iterable[date]) -> None:
        self.plain.replace_partitions(frame, table, days)

    def batch_uri(self, table: Table, batch_id: int, staged: bool = False) -> str:
        return self.plain.batch_uri(table, batch_id, staged)

    def publish_batch(self, frame: DataFrame, table: Table, batch_id: int) -> bool:
        return self.plain.publish_batch(frame, table, batch_id)

    def exists(self, uri: str) -> bool:
        return self.plain.exists(uri)

    def make_dirs(self, uri: str) -> None:
        self.plain.make_dirs(uri)

    def delete(self, uri: str) -> None:
        self.plain.delete(uri)
