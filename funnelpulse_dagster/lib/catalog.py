"""What the Dagster catalog shows for every table, derived from tables.py in one place.

`with_catalog(defs)` maps every asset spec that is a table of tables.py: its column schema (the
Spark schema the code writes and reads), its table name and URI under the configured lake, an
owner, tags for layer and domain, and a freshness policy where a stale table means something is
broken (the gold tables after a missed daily run, the live table after a stalled stream).
"""

from __future__ import annotations

import warnings
from datetime import timedelta

from dagster import (
    AssetSpec,
    BetaWarning,
    Definitions,
    FreshnessPolicy,
    MetadataValue,
    PreviewWarning,
    TableColumn,
    TableSchema,
    with_source_code_references,
)

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.rules import FUNNEL_RATES, ORDERED_RATES
from funnelpulse_dagster.settings import load_settings
from funnelpulse_dagster.tables import (
    ALL_TABLES,
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_SESSION_FUNNEL_DAILY,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    GOLD_TABLES,
    LIVE_TABLES,
    STREAM_TABLES,
    Table,
    column_description,
)

OWNER = "team:data-engineering"
# the batch gold tables are rebuilt daily by the schedule: a day and a couple of hours of slack
DAILY_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(hours=26), warn_window=timedelta(hours=25)
)
# the live table is materialized by every stream run the Kafka sensor starts while the topic has
# messages; half an hour without one is a stalled stream (or an idle shop, which the warn says)
LIVE_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(minutes=30), warn_window=timedelta(minutes=10)
)
FRESHNESS = {
    **{
        table.name: DAILY_FRESHNESS
        for table in (*GOLD_TABLES, GOLD_ANOMALIES_HOURLY_BRAND, GOLD_SESSION_FUNNEL_DAILY)
    },
    # the report is rebuilt after every gold change, so it goes stale with them
    "funnel_report": DAILY_FRESHNESS,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND.name: LIVE_FRESHNESS,
    **{table.name: LIVE_FRESHNESS for table in LIVE_TABLES},
}


def column_meaning(table: Table, column: str) -> str | None:
    """A column's description: a rate's meaning and formula from rules.py, else tables.py's."""
    rates = ORDERED_RATES if table is GOLD_SESSION_FUNNEL_DAILY else FUNNEL_RATES
    rate = next((r for r in rates if r.name == column), None)
    if rate is not None:
        return f"{rate.meaning}: {rate.formula}"
    return column_description(table, column)


def table_schema(table: Table) -> TableSchema:
    """The table's Spark schema as the catalog's column list, every column described."""
    return TableSchema(
        columns=[
            TableColumn(
                name=field.name,
                type=field.dataType.simpleString(),
                description=column_meaning(table, field.name),
            )
            for field in table.schema.fields
        ]
    )


def _layer(name: str) -> str:
    return name.split("_", 1)[0] if name.split("_", 1)[0] in {"bronze", "silver", "gold"} else "stream"


def table_metadata(table: Table, lake: Lake) -> dict:
    return {
        "dagster/column_schema": MetadataValue.table_schema(table_schema(table)),
        "dagster/table_name": table.name,
        "dagster/uri": lake.table_uri(table),
        "partition_column": table.partition_column,
        "format": "parquet (zstd), one directory per partition value",
    }


def _with_table_facts(spec: AssetSpec, lake: Lake) -> AssetSpec:
    """Every asset gets the owner and, where staleness means breakage, a freshness policy; a
    table of tables.py also its columns, name, URI and tags."""
    name = spec.key.to_user_string()
    updated = spec.merge_attributes(owners=[OWNER] if OWNER not in spec.owners else [])
    table = ALL_TABLES.get(name)
    if table is not None:
        updated = updated.merge_attributes(
            metadata=table_metadata(table, lake),
            tags={
                "layer": _layer(table.name),
                "domain": "streaming" if table.name in STREAM_TABLES else "lakehouse",
            },
        )
    policy = FRESHNESS.get(name)
    return updated.replace_attributes(freshness_policy=policy) if policy else updated


def with_catalog(defs: Definitions) -> Definitions:
    """`defs` with links from every asset to its source (the UI's code references) and the table
    facts above on every table asset."""
    lake = Lake(load_settings().lake)
    with warnings.catch_warnings():
        # code references and map_resolved_asset_specs are beta / preview APIs of Dagster 1.13
        warnings.simplefilter("ignore", BetaWarning)
        warnings.simplefilter("ignore", PreviewWarning)
        linked = Definitions(
            assets=with_source_code_references(list(defs.assets or [])),
            asset_checks=defs.asset_checks,
            jobs=defs.jobs,
            schedules=defs.schedules,
            sensors=defs.sensors,
            resources=defs.resources,
            executor=defs.executor,
            loggers=defs.loggers,
            metadata=defs.metadata,
        )
        return linked.map_resolved_asset_specs(func=lambda spec: _with_table_facts(spec, lake))
