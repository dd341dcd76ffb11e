"""Real Dagster materializations of the batch chain on generated data with dirty rows."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from funnelpulse_dagster.resources import LakeResource, RawDataResource
from funnelpulse_dagster.rules import (
    SILVER_KEY_RULE,
    SILVER_ROW_RULES,
    SILVER_RULE_NAMES,
    STREAM_MATCHES_BATCH,
    TABLE_CHECKS,
)
from funnelpulse_dagster.tables import (
    ALL_TABLES,
    BATCH_TABLES,
    BRONZE_EVENTS,
    BRONZE_INGEST_LEDGER,
    BRONZE_QUARANTINE,
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    GOLD_SESSION_FUNNEL_DAILY,
    SILVER_EVENTS,
)
from funnelpulse_dagster_tests import reference
from funnelpulse_dagster_tests.conftest import REPO, batch_assets

ASSETS = batch_assets()


def _run_on(
    spark_resource,
    lake_root: Path | str,
    raw: Path,
    partition_range: tuple[str, str],
    instance: DagsterInstance,
):
    start, end = partition_range
    return materialize(
        ASSETS,
        instance=instance,
        # a range run, as `dagster asset materialize --partition-range` launches it
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        resources={
            "spark": spark_resource,
            "lake": LakeResource(root=str(lake_root)),
            "raw_data": RawDataResource(uri=str(raw)),
        },
    )


def _day_counts(lake: LakeResource, table) -> dict:
    """Rows per stored day among 2019-10-01..03, read without Spark by delta-rs (an independent
    reader of the Delta table)."""
    days = {date(2019, 10, d) for d in (1, 2, 3)}
    frame = DeltaTable(lake.plain.table_uri(table)).to_pandas(columns=[table.partition_column])
    counts = frame[table.partition_column].value_counts().to_dict()
    return {pd.Timestamp(day).date(): n for day, n in counts.items() if pd.Timestamp(day).date() in days}


@pytest.mark.slow
@pytest.mark.both_passes  # the batch chain end to end in each mode
def test_a_range_run_materializes_and_reconciles(spark, spark_resource, batch_run):
    """The suite's shared range run (conftest.batch_run, 2019-10-01...03): every check, every
    table against the reference, each partition's figures; then a day run again changes nothing."""
    result = batch_run.result
    checks = result.get_asset_check_evaluations()
    expected_checks = {key for a in ASSETS for key in a.check_keys}
    # every rule of rules.py on every batch table it guards (the stream's check is not in this run)
    stated = (
        len(SILVER_ROW_RULES) + 1 + sum(len(c.tables) for c in TABLE_CHECKS if c is not STREAM_MATCHES_BATCH)
    )
    assert {c.asset_check_key for c in checks} == expected_checks and len(expected_checks) == stated == 23
    assert all(c.passed for c in checks), [(c.check_name, c.passed) for c in checks if not c.passed]
    # every partition carries its own day's figures, the table's URI and what the Delta commit
    # did to it, nothing of the run as a whole; the detector's drops are the anomalies
    # partitions' findings, not a check
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        assert "dagster/row_count" in metadata and "path" in metadata, event.asset_key
        assert {"delta_version", "delta_operation", "rows_added", "rows_removed"} <= set(metadata), (
            event.asset_key
        )
        assert metadata["rows_added"].value == metadata["dagster/row_count"].value, event.asset_key
        assert not [k for k in metadata if k.startswith("run_")], event.asset_key
        if event.asset_key.to_user_string() == "gold_anomalies_hourly_brand":
            assert {"drops", "incidents"} <= set(metadata)

    lake = batch_run.lake
    # every table of every asset is a Delta table, and the catalog says so
    for table in BATCH_TABLES.values():
        assert DeltaTable.is_deltatable(lake.plain.table_uri(table)), table.name
    assert all("delta" in spec.kinds for a in ASSETS for spec in a.specs)
    files = sorted(batch_run.raw.glob("*.csv"))
    good, bad = reference.parse_files(files)
    in_range = {date(2019, 10, 1), date(2019, 10, 2), date(2019, 10, 3)}
    good = good[good.event_date.isin(in_range)]
    bad = bad[bad.ingest_date.isin(in_range)]

    # bronze + quarantine hold exactly the reference's rows of the days
    assert _day_counts(lake, BRONZE_EVENTS) == good.groupby("event_date").size().to_dict()
    stored_bad = sorted(
        (r.raw_line, r.reason, r.ingest_date) for r in lake.read(spark, BRONZE_QUARANTINE).collect()
    )
    assert stored_bad == sorted(bad[["raw_line", "reason", "ingest_date"]].itertuples(index=False, name=None))
    expected_silver = reference.silver(good)
    for table, expected_of in (
        (GOLD_FUNNEL_HOURLY_BRAND, reference.hourly_brand),
        (GOLD_FUNNEL_DAILY_BRAND, reference.daily_brand),
        (GOLD_FUNNEL_DAILY_CATEGORY, reference.daily_category),
        (GOLD_FUNNEL_HOURLY_PRICE_BAND, reference.hourly_price_band),
    ):
        gold, expected = lake.read(spark, table).toPandas(), expected_of(expected_silver)
        assert len(gold) == len(expected), table.name
        for column in (
            "views",
            "purchases",
            "revenue",
            "view_sessions",
            "purchase_sessions",
            "purchase_users",
        ):
            assert gold[column].sum() == expected[column].sum(), (table.name, column)  # Decimal: to the cent
    # the ordered session funnel, row for row (the reference goes session by session)
    ordered = lake.read(spark, GOLD_SESSION_FUNNEL_DAILY).toPandas()
    expected = reference.ordered_funnel(
        expected_silver.assign(event_time=pd.to_datetime(expected_silver["event_time"]))
    )
    keys = ["session_date", "dimension", "value"]
    columns = [
        "viewed_sessions",
        "carted_sessions",
        "purchased_sessions",
        "bought_sessions",
        "median_seconds_view_to_purchase",
    ]
    ordered["session_date"] = pd.to_datetime(ordered["session_date"]).dt.date
    pd.testing.assert_frame_equal(
        ordered.sort_values(keys, na_position="first")[keys + columns].reset_index(drop=True),
        expected.sort_values(keys, na_position="first")[keys + columns].reset_index(drop=True),
        check_dtype=False,
    )

    # each partition's materialization carries that day's own figures, equal to the reference's
    expected_silver_days = expected_silver.groupby("event_date").size().to_dict()
    expected_rows = {
        BRONZE_EVENTS.name: good.groupby("event_date").size().to_dict(),
        BRONZE_QUARANTINE.name: bad.groupby("ingest_date").size().to_dict(),
        SILVER_EVENTS.name: expected_silver_days,
        GOLD_FUNNEL_HOURLY_BRAND.name: reference.hourly_brand(expected_silver)
        .groupby("window_date")
        .size()
        .to_dict(),
        GOLD_FUNNEL_DAILY_CATEGORY.name: reference.daily_category(expected_silver)
        .groupby("date")
        .size()
        .to_dict(),
    }
    by_partition = _partition_metadata(result)
    for name, rows_by_day in expected_rows.items():
        for day in sorted(in_range):
            metadata = by_partition[(name, day.isoformat())]
            assert metadata["dagster/row_count"].value == rows_by_day.get(day, 0), (name, day)
    silver_day = by_partition[(SILVER_EVENTS.name, "2019-10-02")]
    removed = silver_day["rows_removed_by_rule"].value
    assert set(removed) == {*SILVER_RULE_NAMES, SILVER_KEY_RULE.name}  # every rule of rules.py
    assert removed[SILVER_KEY_RULE.name] > 0
    assert silver_day["rows_in"].value == expected_rows[BRONZE_EVENTS.name][date(2019, 10, 2)]
    assert silver_day["rows_in"].value - sum(removed.values()) == silver_day["rows_out"].value
    quarantine_day = by_partition[(BRONZE_QUARANTINE.name, "2019-10-01")]
    assert sum(quarantine_day["reasons"].value.values()) == expected_rows[BRONZE_QUARANTINE.name].get(
        date(2019, 10, 1), 0
    )

    # idempotent: re-materializing day 2 alone leaves every table identical (the ledger but for
    # the time it was written)
    before = {t.name: lake.read(spark, t).toPandas() for t in BATCH_TABLES.values()}
    again = _run_on(
        spark_resource, lake.root, batch_run.raw, ("2019-10-02", "2019-10-02"), DagsterInstance.ephemeral()
    )
    assert again.success
    # the day's rows were replaced in one new version: as many removed as added, the same count
    rerun = _partition_metadata(again)
    for name, rows_by_day in expected_rows.items():
        metadata, first = rerun[(name, "2019-10-02")], by_partition[(name, "2019-10-02")]
        assert (
            metadata["rows_removed"].value
            == metadata["rows_added"].value
            == rows_by_day.get(date(2019, 10, 2), 0)
        )
        # a day with no rows before or after: Delta commits nothing, and the metadata says so
        unchanged = (
            metadata["delta_operation"].value == "NO CHANGE" and rows_by_day.get(date(2019, 10, 2), 0) == 0
        )
        assert unchanged or metadata["delta_version"].value > first["delta_version"].value, name
    # the same input gave the same row counts: the version check compared the day and passed
    changes = [c for c in again.get_asset_check_evaluations() if c.check_name == "row_change_explained"]
    assert len(changes) == 6 and all(c.passed for c in changes)
    assert all(c.metadata["days_compared"].value == 1 for c in changes)
    for table in BATCH_TABLES.values():
        after = lake.read(spark, table)
        expected = spark.createDataFrame(before[table.name], table.schema)
        if table is BRONZE_INGEST_LEDGER:
            after, expected = after.drop("ingested_at"), expected.drop("ingested_at")
        assertDataFrameEqual(after, expected)


def _partition_metadata(result) -> dict[tuple[str, str], dict]:
    """(asset, partition) → the metadata of its materialization in the run."""
    return {
        (event.asset_key.to_user_string(), event.partition): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }


@pytest.mark.slow  # a CLI subprocess that starts its own Spark
def test_definitions_load():
    from funnelpulse_dagster.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    # every table of the contracts is an asset, plus the Kafka topic the live tables read and
    # the report
    assert keys == set(ALL_TABLES) | {"kafka_events_topic", "funnel_report"}
    for job in (
        "batch_lakehouse_job",
        "live_funnel_job",
        "kafka_replay_job",
        "funnel_report_job",
        "lake_maintenance_job",
    ):
        assert defs.resolve_job_def(job) is not None
    assert {s.name for s in defs.sensors} == {
        "raw_files_sensor",
        "kafka_offsets_sensor",
        "report_automation_sensor",
        "alerts_sensor",
    }


def test_demo_selection_can_run_as_a_partition_range():
    """`dagster asset materialize --partition-range` refuses a selection unless every asset in it
    has a single-run backfill policy; the README's demo selects 'not group:streaming', so an asset
    added to the batch side without one would break the demo command (it did once: the report)."""
    from dagster import AssetSelection, BackfillPolicy

    from funnelpulse_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    demo_selection = AssetSelection.all() - AssetSelection.groups("streaming")
    selected = demo_selection.resolve(graph)
    assert {k.to_user_string() for k in selected} >= {"bronze_events", "funnel_report"}
    without_single_run = [
        key.to_user_string()
        for key in selected
        if graph.get(key).backfill_policy != BackfillPolicy.single_run()
    ]
    assert without_single_run == []


@pytest.mark.slow  # a full materialization of its own: the full suite runs it, the quick lane does not
def test_failed_blocking_check_stops_downstream(
    spark_resource, sample_raw_dir, funnelpulse_home, monkeypatch
):
    """A silver that breaks a hard rule (here: duplicates kept) fails its ERROR check, and the
    blocking check keeps gold from being built on it."""
    import funnelpulse_dagster.defs.lakehouse.silver as silver_module
    from funnelpulse_dagster.transforms.silver import apply_silver_rules, normalise_events

    def silver_without_dedup(bronze, one_task_per_day=True):
        events = bronze.transform(apply_silver_rules).withColumn("event_date", F.to_date("event_time"))
        return events.transform(normalise_events).select(*SILVER_EVENTS.schema.fieldNames())

    monkeypatch.setattr(silver_module, "to_silver", silver_without_dedup)
    for f in sample_raw_dir.glob("*.csv"):
        shutil.copy(f, funnelpulse_home / "data_raw" / f.name)
    result = materialize(
        ASSETS,
        instance=DagsterInstance.ephemeral(),
        partition_key="2019-10-01",
        raise_on_error=False,
        resources={
            "spark": spark_resource,
            "lake": LakeResource(root=str(funnelpulse_home / "tables")),
            "raw_data": RawDataResource(uri=str(funnelpulse_home / "data_raw")),
        },
    )
    assert not result.success
    failed = {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}
    assert failed == {"no_duplicate_event_key"}
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert GOLD_FUNNEL_HOURLY_BRAND.name not in materialized
    assert not (funnelpulse_home / "tables" / GOLD_FUNNEL_HOURLY_BRAND.name).exists()


def test_local_instance_queue_runs_one_spark_run_at_a_time(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 1
        assert not instance.telemetry_enabled
