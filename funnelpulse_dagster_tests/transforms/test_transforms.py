"""Each transform against the independent reference implementation (reference.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.ingest import files_owning, land, parsed_lines
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    SILVER_EVENTS,
)
from funnelpulse_dagster.transforms.bronze import bronze_rows, quarantine_rows
from funnelpulse_dagster.transforms.gold import (
    daily_brand_funnel,
    daily_category_funnel,
    hourly_brand_funnel,
    hourly_price_band_funnel,
)
from funnelpulse_dagster.transforms.silver import silver_rule_counts, to_silver
from funnelpulse_dagster_tests import reference
from funnelpulse_dagster_tests.conftest import TEST_DATA

# the Connect pass leaves these out: bronze, silver and gold are DataFrame -> DataFrame functions, which send the same plan in both modes
pytestmark = pytest.mark.spark_mode_independent


@pytest.fixture
def parse(spark, tmp_path_factory):
    """Bronze's parse of `files` for `days` (default: every day the files own), landed in a lake
    of its own: (its bronze rows, its quarantine rows)."""

    def parse_files(files: list[Path], days=None):
        lake = Lake(str(tmp_path_factory.mktemp("lake")))
        landing = land(spark, lake, [lakefs.info(str(f)) for f in files])
        days = days or sorted({d for f in landing.files for d in f.lines_by_day})
        parsed = parsed_lines(spark, lake, files_owning(landing.files, days), days)
        return bronze_rows(parsed, days), quarantine_rows(parsed, days)

    return parse_files


def test_dirty_file_bronze_and_quarantine_match_reference(spark, parse):
    path = TEST_DATA / "dirty_events.csv"
    bronze, quarantine = parse([path])
    expected_good, expected_bad = reference.parse_files([path])

    columns = [c for c in BRONZE_EVENTS.schema.fieldNames() if c != "source_file"]
    actual_bronze = bronze.drop("source_file")
    assertDataFrameEqual(
        actual_bronze, reference.as_spark_frame(spark, expected_good, BRONZE_EVENTS.schema, columns)
    )

    actual_q = quarantine.drop("source_file")
    expected_q = spark.createDataFrame(
        expected_bad[["raw_line", "reason", "ingest_date"]].itertuples(index=False),
        "raw_line string, reason string, ingest_date date",
    )
    assertDataFrameEqual(actual_q, expected_q)
    # every kind of damage got its own reason
    reasons = {r.reason for r in actual_q.select("reason").collect()}
    assert reasons == {
        "unparseable event_time",
        "missing event_time",
        "non-integer product_id",
        "non-numeric price",
        "non-integer user_id",
        "expected 9 fields, found 3",
        "expected 9 fields, found 10",
        "expected 9 fields, found 1",
    }


def test_every_input_line_lands_exactly_once(spark, parse, sample_raw_dir):
    files = sorted(sample_raw_dir.glob("*.csv"))
    bronze, quarantine = parse(files)
    data_lines = sum(
        1
        for f in files
        for line in f.read_text().split("\n")
        if line.strip() and line.strip() != reference.HEADER
    )
    assert bronze.count() + quarantine.count() == data_lines
    # the generator's four kinds of unparseable line are all quarantined
    assert quarantine.count() == 4


@pytest.mark.slow  # the quick lane keeps every-line-lands-once and the reference
def test_restricting_to_days_partitions_lines_without_loss(spark, parse, sample_raw_dir):
    files = sorted(sample_raw_dir.glob("*.csv"))

    def rows(days=None) -> int:
        bronze, quarantine = parse(files, days)
        return bronze.count() + quarantine.count()

    per_day = [rows([date(2019, 10, d)]) for d in (1, 2, 3)]
    assert all(per_day) and sum(per_day) == rows()


def test_real_export_fixture_parses_without_quarantine(spark, parse):
    # the first 5,019 rows of a real export (REES46 multi-category store, October 2019)
    fixture = TEST_DATA / "rees46-multicategory-2019-Oct-first5019.csv"
    bronze, quarantine = parse([fixture])
    assert quarantine.count() == 0
    lines = [l for l in fixture.read_text().split("\n") if l.strip()][1:]
    assert bronze.count() == len(lines) == 5019
    # 19-digit category ids survive as 64-bit integers
    expected_max = max(int(l.split(",")[3]) for l in lines)
    assert bronze.agg(F.max("category_id")).first()[0] == expected_max


def test_silver_and_gold_match_reference(spark, parse, sample_raw_dir):
    files = sorted(sample_raw_dir.glob("*.csv")) + [TEST_DATA / "dirty_events.csv"]
    bronze = parse(files)[0].drop("source_file")
    good, _ = reference.parse_files(files)
    expected_silver = reference.silver(good)

    silver = to_silver(bronze)
    compare = [
        "event_time",
        "event_type",
        "product_id",
        "price",
        "user_id",
        "user_session",
        "brand_norm",
        "category_code_norm",
        "category_root",
        "price_band",
        "event_date",
    ]
    expected_frame = reference.as_spark_frame(spark, expected_silver, SILVER_EVENTS.schema, compare)
    assertDataFrameEqual(silver.select(*compare), expected_frame)
    # the cluster profile's shuffle (by the whole key, not the day) keeps the same rows
    assertDataFrameEqual(to_silver(bronze, one_task_per_day=False).select(*compare), expected_frame)

    for build, expected_of, table in (
        (hourly_brand_funnel, reference.hourly_brand, GOLD_FUNNEL_HOURLY_BRAND),
        (daily_brand_funnel, reference.daily_brand, GOLD_FUNNEL_DAILY_BRAND),
        (daily_category_funnel, reference.daily_category, GOLD_FUNNEL_DAILY_CATEGORY),
        (hourly_price_band_funnel, reference.hourly_price_band, GOLD_FUNNEL_HOURLY_PRICE_BAND),
    ):
        expected = reference.as_spark_frame(
            spark, expected_of(expected_silver), table.schema, table.schema.fieldNames()
        )
        assertDataFrameEqual(build(silver), expected, rtol=1e-9)


@pytest.mark.slow  # a plan test; the quick lane keeps the reference
def test_silver_puts_each_day_on_one_task_on_a_laptop_and_spreads_it_on_a_cluster(
    spark, parse, sample_raw_dir
):
    """The laptop profile's silver shuffle is by day, so its write makes one file per day whatever
    the session's number of shuffle partitions (a cluster's default of 200 would otherwise write
    up to 200 small files a day); the cluster profile's is by the whole key, so no task holds a
    whole day."""
    bronze = parse(sorted(sample_raw_dir.glob("*.csv")))[0]
    settings = {
        "spark.sql.shuffle.partitions": "16",
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
    }
    before = {key: spark.conf.get(key) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)

    def tasks_per_day(one_task_per_day: bool) -> dict[date, int]:
        return {
            r["event_date"]: r["tasks"]
            for r in to_silver(bronze, one_task_per_day)
            .withColumn("task", F.spark_partition_id())
            .groupBy("event_date")
            .agg(F.count_distinct("task").alias("tasks"))
            .collect()
        }

    try:
        laptop, cluster = tasks_per_day(True), tasks_per_day(False)
    finally:
        for key, value in before.items():
            spark.conf.set(key, value)
    assert laptop == {date(2019, 10, d): 1 for d in (1, 2, 3)}
    assert cluster.keys() == laptop.keys() and min(cluster.values()) == 16


def test_silver_rule_counts_explain_every_removed_row(spark, parse):
    bronze = parse([TEST_DATA / "dirty_events.csv"])[0].drop("source_file")
    counts: dict[str, int] = {}
    for r in silver_rule_counts(bronze).collect():  # per day and rule; this file spans days
        counts[r["rule"]] = counts.get(r["rule"], 0) + r["count"]
    assert counts == {"passed": 12, "non_positive_price": 2, "null_price": 1, "unknown_event_type": 1}
    # two exact duplicates (a view and a cart) go in de-duplication
    assert to_silver(bronze).count() == counts["passed"] - 2
