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

from funnelpulse_dagster.lakehouse.lake import TaggedCommit
from funnelpulse_dagster.lib.partitions import (
    daily_partitions,
    partition_days,
    report_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import check_spec, row_change_explained
from funnelpulse_dagster.resources import LakeResource, SparkResource
from funnelpulse_dagster.rules import ROW_CHANGE_EXPLAINED
from funnelpulse_dagster.runtime.profiles import LAPTOP, SparkProfile, spark_profile
from funnelpulse_dagster.tables import Table
from funnelpulse_dagster.timing import PhaseTimer

SPARK_TABLE_KINDS = {"spark", "delta"}


@dataclass
class TableRun:
    """What a table's build gets: the run's days, Spark, the lake, and a phase timer."""

    context: AssetExecutionContext
    table: Table
    session: SparkSession
    lake: LakeResource
    days: list[date]
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    # what the session's settings are sized for; transforms that shape their shuffles read it
    sized_for: SparkProfile = field(default_factory=lambda: spark_profile(LAPTOP))

    def read(self, table: Table, days: Sequence[date] | None = None) -> DataFrame:
        """`table`'s rows of `days` (default: the run's)."""
        return self.lake.read(self.session, table, list(days) if days is not None else self.days)

    @property
    def tag(self) -> str:
        """What the run's commits carry (Delta's userMetadata): the Dagster run id."""
        return self.context.run.run_id

    def write(self, frame: DataFrame, table: Table | None = None) -> None:
        """Replace exactly the run's partitions of `table` (default: this asset's) with `frame`,
        in one commit tagged with the run id."""
        self.lake.replace_partitions(frame, table or self.table, self.days, tag=self.tag)

    def stored(self, table: Table | None = None) -> DataFrame:
        """What the run wrote, read back from the version its commit made (not a later writer's):
        the checks judge the stored rows."""
        table = table or self.table
        version = self.lake.plain.committed_version(table, self.tag)
        return self.lake.read(self.session, table, self.days, as_of=version)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.timer.phase(name):
            yield

    def report(self, table: Table, figures_by_day: Mapping[date, Mapping[str, Any]]) -> MaterializeResult:
        """Each partition's own figures with what the run's commit did to it (the Delta version,
        the operation, rows added and removed), and the materialization of `table`."""
        commit = self.lake.plain.tagged_commit(table, self.tag)
        if commit is None and self.lake.is_table(table):
            # Delta makes no commit for a write that neither adds nor removes a row
            commit = self.lake.plain.unchanged(table)
        figures = {day: {**values, **_commit_figures(commit, day)} for day, values in figures_by_day.items()}
        report_partitions(self.context, table.name, figures)
        metadata: dict[str, Any] = {"path": MetadataValue.path(self.lake.table_uri(table))}
        if commit is not None:
            metadata |= {
                "delta_version": commit.snapshot.version,
                "delta_operation": commit.snapshot.operation,
            }
        return MaterializeResult(asset_key=table.name, metadata=metadata)

    def row_change_check(self, table: Table, input_table: Table) -> AssetCheckResult:
        """rules.ROW_CHANGE_EXPLAINED for the run's days of `table`, against `input_table`."""
        lake = self.lake.plain
        commit = lake.tagged_commit(table, self.tag)
        input_now = lake.rows_by_partition(input_table) if lake.is_table(input_table) else {}
        input_then = (
            lake.rows_by_partition(input_table, commit.previous_at)
            if commit is not None and commit.previous_at is not None and lake.is_table(input_table)
            else {}
        )
        return row_change_explained(table.name, commit, input_then, input_now, self.days)

    def log_phases(self) -> None:
        self.context.log.info(
            f"{self.table.name}: {len(self.days)} day(s), {self.timer.total} s; phases (s): {self.timer.phases}"
        )


def _commit_figures(commit: TaggedCommit | None, day: date) -> dict[str, Any]:
    if commit is None:
        return {}
    key = day.isoformat()
    return {
        "delta_version": commit.snapshot.version,
        "delta_operation": commit.snapshot.operation,
        "rows_added": commit.rows_after.get(key, 0),
        "rows_removed": commit.rows_before.get(key, 0),
    }


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
    return TableRun(context, table, session, lake, partition_days(context), timer, spark.sized_for)


def daily_spark_table(
    table: Table,
    *,
    description: str,
    group: str,
    deps: Sequence[Any],
    checks: Sequence[Any] = (),
    config: type[Config] | None = None,
    input_table: Table | None = None,
) -> Callable[[Callable[..., Built]], AssetsDefinition]:
    """The asset of `table` built by the decorated `build(run)` (or `build(run, config)` when a
    run config class is given). `checks` are rules.py's rules the build's results answer, each a
    blocking check. With `input_table`, the asset also gets the warning check
    rules.ROW_CHANGE_EXPLAINED against it."""
    specs = [check_spec(rule, table.name) for rule in checks]
    if input_table is not None:
        specs.append(check_spec(ROW_CHANGE_EXPLAINED, table.name, blocking=False))

    def decorate(build: Callable[..., Built]) -> AssetsDefinition:
        def materialize(context, spark, lake, *extra):
            run = start_run(context, table, spark, lake)
            built = build(run, *extra)
            run.log_phases()
            yield run.report(table, built.figures_by_day)
            yield from built.checks
            if input_table is not None:
                yield run.row_change_check(table, input_table)

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
