"""One skeleton for a daily-partitioned Spark table: an asset states its inputs, its transform
and its checks; the conventions live here once.

    @daily_spark_table(SILVER_EVENTS, deps=[...], description="...", group="silver", checks=[...])
    def silver_events(run: TableRun) -> Built:
        bronze = run.read(BRONZE_EVENTS)
        with run.phase("transform_and_write"):
            run.write(to_silver(bronze))
        ...
        return Built(figures_by_day, checks=[...])

The skeleton gives every such asset:
- the daily partitions, one run (and one Spark job per step) for a whole range, `kinds`;
- its asset checks from rules.py (`check_spec`), blocking;
- a `TableRun`: the Spark session, the lake, the run's days, a phase timer, reads and a write
  that replaces exactly the run's partitions;
- per partition: that day's own figures (`dagster/row_count` among them), and the table's URI;
  what holds for the whole run (days, phase timings) goes to the run's log, so no partition
  repeats another's figures.
Owners, column schemas and freshness are the catalog's (lib/catalog.py), for every asset alike.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetsDefinition,
    BetaWarning,
    CodeReferencesMetadataValue,
    Config,
    LocalFileCodeReference,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pyspark.sql import DataFrame, SparkSession

from funnelpulse_dagster.lib.partitions import (
    daily_partitions,
    partition_days,
    report_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import check_spec
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.tables import Table
from funnelpulse_dagster.timing import PhaseTimer

SPARK_TABLE_KINDS = {"spark", "parquet"}


@dataclass
class TableRun:
    """What a table's build gets: the run's days, Spark, the lake, and a phase timer."""

    context: AssetExecutionContext
    table: Table
    session: SparkSession
    lake: LakeResource
    days: list[date]
    timer: PhaseTimer = field(default_factory=PhaseTimer)

    def read(self, table: Table, days: Sequence[date] | None = None) -> DataFrame:
        """`table`'s rows of `days` (default: the run's)."""
        return self.lake.read(self.session, table, list(days) if days is not None else self.days)

    def write(self, frame: DataFrame, table: Table | None = None) -> None:
        """Replace exactly the run's partitions of `table` (default: this asset's) with `frame`."""
        self.lake.replace_partitions(frame, table or self.table, self.days)

    def stored(self, table: Table | None = None) -> DataFrame:
        """What the run wrote, read back: the checks judge the stored rows."""
        return self.read(table or self.table)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.timer.phase(name):
            yield

    def report(self, table: Table, figures_by_day: Mapping[date, Mapping[str, Any]]) -> MaterializeResult:
        """Each partition's own figures, and the materialization of `table`."""
        report_partitions(self.context, table.name, figures_by_day)
        return MaterializeResult(
            asset_key=table.name, metadata={"path": MetadataValue.path(self.lake.table_uri(table))}
        )

    def log_phases(self) -> None:
        self.context.log.info(
            f"{self.table.name}: {len(self.days)} day(s), {self.timer.total} s; phases (s): {self.timer.phases}"
        )


@dataclass
class Built:
    """A build's outcome: each day's figures (its partition's metadata) and the check results."""

    figures_by_day: Mapping[date, Mapping[str, Any]]
    checks: Sequence[AssetCheckResult] = ()


def start_run(
    context: AssetExecutionContext, table: Table, spark: SparkResource, lake: LakeResource
) -> TableRun:
    """A TableRun for `table` (the session started inside the `spark_session` phase)."""
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    return TableRun(context, table, session, lake, partition_days(context), timer)


def daily_spark_table(
    table: Table,
    *,
    description: str,
    group: str,
    deps: Sequence[Any],
    checks: Sequence[Any] = (),
    config: type[Config] | None = None,
) -> Callable[[Callable[..., Built]], AssetsDefinition]:
    """The asset of `table` built by the decorated `build(run)` (or `build(run, config)` when a
    run config class is given). `checks` are rules.py's rules the build's results answer, each a
    blocking check."""
    specs = [check_spec(rule, table.name) for rule in checks]

    def decorate(build: Callable[..., Built]) -> AssetsDefinition:
        def materialize(context, spark, lake, *extra):
            run = start_run(context, table, spark, lake)
            built = build(run, *extra)
            run.log_phases()
            yield run.report(table, built.figures_by_day)
            yield from built.checks

        common = {
            "name": table.name,
            "deps": list(deps),
            "description": description,
            "group_name": group,
            "kinds": SPARK_TABLE_KINDS,
            "partitions_def": daily_partitions,
            "backfill_policy": single_run_backfill,
            "check_specs": specs,
        }
        # Dagster reads the resources and the run config from the signature's annotations
        annotations = {"context": AssetExecutionContext, "spark": SparkResource, "lake": LakeResource}
        if config is None:

            def body(context, spark, lake):
                yield from materialize(context, spark, lake)

        else:

            def body(context, spark, lake, config):
                yield from materialize(context, spark, lake, config)

            annotations["config"] = config
        body.__annotations__ = annotations
        body.__name__ = body.__qualname__ = build.__name__
        body.__doc__ = build.__doc__
        # the UI's code reference leads to the build, not to this skeleton (beta classes of
        # Dagster 1.13, as lib/catalog.py's code references)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BetaWarning)
            reference = LocalFileCodeReference(
                file_path=inspect.getsourcefile(build), line_number=inspect.getsourcelines(build)[1]
            )
            common["metadata"] = {
                "dagster/code_references": CodeReferencesMetadataValue(code_references=[reference])
            }
        return asset(**common)(body)

    return decorate
