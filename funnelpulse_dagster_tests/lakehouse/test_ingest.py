"""Every input line accounted for: the ownership rule, the ingest ledger, the reconciliation over
every day a file owns, and the export shapes a shop really sends. Real Dagster materializations
of the bronze assets on a real SparkSession; expectations from reference.py (pandas, written
separately) or counted from the file's text."""

from __future__ import annotations

import gzip
import os
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from pyspark.sql import functions as F

from funnelpulse_dagster.defs.lakehouse.automation import days_owned_by
from funnelpulse_dagster.defs.lakehouse.bronze import bronze
from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.ingest import land
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.resources import LakeResource, RawDataResource
from funnelpulse_dagster.rules import INPUT_ROWS_RECONCILE
from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    BRONZE_INGEST_LEDGER,
    BRONZE_LANDING_LINES,
    BRONZE_QUARANTINE,
    RAW_COLUMNS,
)
from funnelpulse_dagster_tests import reference

HEADER = ",".join(RAW_COLUMNS)
NOV4, NOV5 = date(2019, 11, 4), date(2019, 11, 5)
# the seven malformed lines of the report, appended to an ordinary export
MALFORMED = [
    "2019-11-05 11:00:00 UTC,view,1,2,,b,abc,3,s",  # non-numeric price
    "2019-11-05 11:00:00 UTC,teleport,1,2,,b,1.00,3,s",  # unknown event type (a silver rule)
    ",view,1,2,,b,1.00,3,s",  # empty event_time
    "2019-11-05 11:00:00 UTC,view,1,2,,b,-1.00,3,s",  # negative price (a silver rule)
    "2019-11-05 11:00:00 UTC,view,1",  # short row
    "garbage line with no commas",
    "2019-13-45 99:00:00 UTC,view,1,2,,b,1.00,3,s",  # impossible date
]


def _rows(n: int = 50) -> list[list[str]]:
    """n good events over Nov 4 and 5, as field lists in the export's column order."""
    rows = []
    for i in range(n):
        day = 4 if i < n // 2 else 5
        brand = "" if i % 7 == 0 else f"brand{i % 3}"
        category = "" if i % 5 == 0 else "beauty.skin.cream"
        event = ("view", "cart", "purchase", "remove_from_cart")[i % 4]
        rows.append(
            [
                f"2019-11-{day:02d} {i % 24:02d}:{i:02d}:00 UTC",
                event,
                str(1000 + i),
                "2053013552326770905",
                category,
                brand,
                f"{i + 1}.{i % 100:02d}",
                str(500 + i % 9),
                f"session-{i % 11}",
            ]
        )
    return rows


def _write(
    path: Path, lines: list[str], newline: str = "\n", bom: bool = False, compress: bool = False
) -> Path:
    text = ("\ufeff" if bom else "") + newline.join(lines) + newline
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _records(lines: list[str], header: str | None = HEADER) -> int:
    return sum(1 for x in lines if x.strip() and x.strip() != header)


def _materialize(
    spark_resource, home: Path, first: str, last: str, raise_on_error: bool = True, lake=None, instance=None
):
    return materialize(
        [bronze],
        instance=instance or DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        resources={
            "spark": spark_resource,
            "lake": lake or LakeResource(root=str(home / "tables")),
            "raw_data": RawDataResource(uri=str(home / "data_raw")),
        },
        raise_on_error=raise_on_error,
    )


def _stored(spark, home: Path):
    lake = LakeResource(root=str(home / "tables"))
    good = lake.read(spark, BRONZE_EVENTS).drop("source_file").toPandas()
    bad = sorted((r.raw_line, r.reason, r.ingest_date) for r in lake.read(spark, BRONZE_QUARANTINE).collect())
    return lake, good, bad


def _assert_equals_reference(spark, home: Path, files: list[Path]):
    expected_good, expected_bad = reference.parse_files(files)
    _, good, bad = _stored(spark, home)
    assert len(good) == len(expected_good)
    columns = [
        "event_time",
        "event_type",
        "product_id",
        "brand",
        "price",
        "user_id",
        "user_session",
        "event_date",
    ]

    def key(frame):
        return sorted(
            tuple(None if pd.isna(v) else v for v in row)
            for row in frame[columns].astype(object).itertuples(index=False)
        )

    assert key(good) == key(expected_good)
    assert bad == sorted(
        expected_bad[["raw_line", "reason", "ingest_date"]].itertuples(index=False, name=None)
    )


def _check(result):
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == INPUT_ROWS_RECONCILE.name)


def _failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error, messages = failures[0].event_specific_data.error, []
    while error is not None:  # the user's exception is the cause of Dagster's wrapper
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


@pytest.mark.slow  # several bronze runs; the quick lane keeps the one-day and hostile-file tests
def test_lines_without_a_date_belong_to_the_files_first_day_and_nothing_is_lost(
    spark, spark_resource, funnelpulse_home, monkeypatch
):
    # the report's case: a start date before the file, a run over exactly the days it covers
    monkeypatch.setenv("FUNNELPULSE_START_DATE", "2019-11-01")
    lines = [HEADER, *[",".join(r) for r in _rows()], *MALFORMED]
    path = _write(funnelpulse_home / "data_raw" / "2019-Nov.csv", lines)
    assert days_owned_by(str(path)) == {NOV4, NOV5}  # what the sensor would ask for

    result = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-05")
    check = _check(result)
    assert check.passed, check.description
    lake, good, bad = _stored(spark, funnelpulse_home)
    assert len(good) + len(bad) == _records(lines) == 57
    _assert_equals_reference(spark, funnelpulse_home, [path])
    # the three undated lines went to the file's first day, Nov 4
    assert sorted(r for r in bad if r[2] == NOV4) == sorted(
        (line, reason, NOV4)
        for line, reason in (
            (",view,1,2,,b,1.00,3,s", "missing event_time"),
            ("garbage line with no commas", "expected 9 fields, found 1"),
            ("2019-13-45 99:00:00 UTC,view,1,2,,b,1.00,3,s", "unparseable event_time"),
        )
    )
    # the ledger: one row per file and day, its lines, and where they landed
    ledger = {r.ingest_date: r for r in lake.read(spark, BRONZE_INGEST_LEDGER).collect()}
    assert set(ledger) == {NOV4, NOV5}
    for day, row in ledger.items():
        assert row.source_file == str(path)
        assert row.file_size == path.stat().st_size
        assert row.owned_lines == row.bronze_rows + row.quarantine_rows
        assert row.owned_lines == len(good[good.event_date == day]) + sum(1 for b in bad if b[2] == day)
    assert ledger[NOV4].file_fingerprint == lakefs.info(str(path)).fingerprint


@pytest.mark.slow  # a whole bronze run for a failing check; the quick lane keeps the one-day run
def test_a_lost_line_fails_the_check_and_names_file_and_day(spark_resource, funnelpulse_home):
    path = _write(funnelpulse_home / "data_raw" / "x.csv", [HEADER, *[",".join(r) for r in _rows(20)]])

    class LosingLake(LakeResource):
        """Drops one bronze row on its way to storage."""

        def replace_partitions(self, frame, table, days, tag=None):
            if table is BRONZE_EVENTS:
                frame = frame.filter(F.col("product_id") != 1015)
            super().replace_partitions(frame, table, days, tag)

    result = _materialize(
        spark_resource,
        funnelpulse_home,
        "2019-11-04",
        "2019-11-05",
        raise_on_error=False,
        lake=LosingLake(root=str(funnelpulse_home / "tables")),
    )
    check = _check(result)
    assert not check.passed
    assert f"{path} on 2019-11-05" in check.description and "+1 lines unaccounted for" in check.description


@pytest.mark.slow  # two bronze runs; the quick lane keeps the one-day run
def test_days_the_run_did_not_build_are_named_not_hidden(spark_resource, funnelpulse_home):
    path = _write(funnelpulse_home / "data_raw" / "x.csv", [HEADER, *[",".join(r) for r in _rows(20)]])
    result = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-04")
    check = _check(result)
    assert check.passed
    pending = check.metadata["pending_file_days"].value
    assert pending == [{"file": str(path), "day": "2019-11-05", "lines": 10}]


def test_a_run_of_one_day_stores_only_that_days_lines(spark, spark_resource, funnelpulse_home):
    # bad lines on both days: Nov 5's own, and the undated ones that go to the file's first day
    lines = [HEADER, *[",".join(r) for r in _rows()], *MALFORMED]
    path = _write(funnelpulse_home / "data_raw" / "x.csv", lines)
    expected_good, expected_bad = reference.parse_files([path])

    assert _check(_materialize(spark_resource, funnelpulse_home, "2019-11-05", "2019-11-05")).passed
    _, good, bad = _stored(spark, funnelpulse_home)
    assert set(good.event_date) == {NOV5}
    assert len(good) == int((expected_good.event_date == NOV5).sum())
    assert bad == sorted(
        (line, reason, day)
        for line, reason, day in expected_bad[["raw_line", "reason", "ingest_date"]].itertuples(
            index=False, name=None
        )
        if day == NOV5
    )

    assert _check(_materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-04")).passed
    _assert_equals_reference(spark, funnelpulse_home, [path])


def _bronze_metadata(result, day: date) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(BRONZE_EVENTS.name) and e.partition == day.isoformat()
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _run_log(instance, result) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(result.run_id) if e.user_message)


@pytest.mark.slow  # four bronze runs; the quick lane keeps the one-day and ownership tests
def test_a_landed_export_is_read_once_and_a_changed_one_again_for_its_days(
    spark, spark_resource, funnelpulse_home
):
    lines = [HEADER, *[",".join(r) for r in _rows()], *MALFORMED]
    path = _write(funnelpulse_home / "data_raw" / "x.csv", lines)
    expected_good, expected_bad = reference.parse_files([path])

    def day_lines(day: date) -> int:  # the records a day owns, by the reference
        return int((expected_good.event_date == day).sum() + (expected_bad.ingest_date == day).sum())

    def parsed(instance, result) -> int:
        return int(re.search(r"(\d+) landed record\(s\) parsed", _run_log(instance, result)).group(1))

    instance = DagsterInstance.ephemeral()
    # the first run that needs the file reads it whole, and parses only its day's records
    first = _materialize(spark_resource, funnelpulse_home, "2019-11-05", "2019-11-05", instance=instance)
    (uri,) = _bronze_metadata(first, NOV5)["input_files"]
    assert _bronze_metadata(first, NOV5)["files_read_whole"] == {uri: _records(lines)}
    assert parsed(instance, first) == day_lines(NOV5) < _records(lines)
    # a run of another day reads nothing whole: only that day's landed records
    second = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-04", instance=instance)
    assert _bronze_metadata(second, NOV4)["files_read_whole"] == {}
    assert parsed(instance, second) == day_lines(NOV4)
    assert _check(second).passed
    _assert_equals_reference(spark, funnelpulse_home, [path])

    # the export changes (a record of Nov 6 added): the next run reads it whole again, and the
    # days it owned or owns outside the run are named stale
    changed = [*lines, "2019-11-06 10:00:00 UTC,view,1,2,,b,1.00,3,s"]
    _write(path, changed)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = _materialize(spark_resource, funnelpulse_home, "2019-11-05", "2019-11-05", instance=instance)
    assert _bronze_metadata(third, NOV5)["files_read_whole"] == {uri: _records(changed)}
    assert parsed(instance, third) == day_lines(NOV5)
    assert "outside this run are stale until they are materialized again: 2019-11-04, 2019-11-06" in (
        _run_log(instance, third)
    )
    # the landed records are the file as it is now, and only that
    landed = Lake(str(funnelpulse_home / "tables"))
    assert sum(landed.rows_by_partition(BRONZE_LANDING_LINES).values()) == _records(changed)
    sixth = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-06", instance=instance)
    assert _bronze_metadata(sixth, date(2019, 11, 6))["files_read_whole"] == {}
    assert _check(sixth).passed
    _assert_equals_reference(spark, funnelpulse_home, [path])


def _shape_lines(kind: str) -> tuple[list[str], dict]:
    rows = _rows(24)
    if kind == "reordered_columns":  # brand and price swapped, the header says so
        order = list(RAW_COLUMNS)
        order[5], order[6] = order[6], order[5]
        idx = [RAW_COLUMNS.index(c) for c in order]
        return [",".join(order), *[",".join(r[i] for i in idx) for r in rows]], {}
    if kind == "extra_named_column":
        return [HEADER + ",channel", *[",".join([*r, "web"]) for r in rows]], {}
    if kind == "gzip":
        return [HEADER, *[",".join(r) for r in rows]], {"compress": True}
    if kind == "crlf_and_bom":
        return [HEADER, *[",".join(r) for r in rows]], {"newline": "\r\n", "bom": True}
    if kind == "header_only":
        return [HEADER], {}
    if kind == "empty":
        return [], {}
    raise ValueError(kind)


# a bronze run each: the quick lane keeps one shape (no records) beside its one-day and
# lost-line runs; the full suite runs every one. The shapes differ in the file's bytes only,
# which one plan reads in either Spark mode: the Connect pass runs the one with records and the
# most to check (conftest.py: `spark_mode_independent`)
_SLOW = pytest.mark.slow
_SHAPE_ONLY = [_SLOW, pytest.mark.spark_mode_independent]


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("reordered_columns", marks=_SLOW),
        pytest.param("extra_named_column", marks=_SHAPE_ONLY),
        pytest.param("gzip", marks=_SHAPE_ONLY),
        pytest.param("crlf_and_bom", marks=_SHAPE_ONLY),
        pytest.param("header_only", marks=_SHAPE_ONLY),
        pytest.param("empty", marks=pytest.mark.spark_mode_independent),
    ],
)
def test_export_shapes_are_ingested_as_the_reference_reads_them(
    spark, spark_resource, funnelpulse_home, kind
):
    lines, options = _shape_lines(kind)
    name = "export.csv.gz" if options.get("compress") else "export.csv"
    path = _write(funnelpulse_home / "data_raw" / name, lines, **options) if lines else None
    if path is None:
        path = funnelpulse_home / "data_raw" / name
        path.write_bytes(b"")
    # a plain file beside it, so a run always has something to read
    plain = _write(funnelpulse_home / "data_raw" / "plain.csv", [HEADER, *[",".join(r) for r in _rows(6)]])
    result = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-05")
    assert _check(result).passed
    _assert_equals_reference(spark, funnelpulse_home, [path, plain])
    expected_good, _ = reference.parse_files([path])
    assert days_owned_by(str(path)) == (set(expected_good.event_date) if len(expected_good) else set())
    if kind == "reordered_columns":  # prices are prices, brands are brands
        _, good, _ = _stored(spark, funnelpulse_home)
        assert good.price.notna().all() and not good.brand.fillna("").str.contains(r"\.").any()


@pytest.mark.parametrize(
    "kind, lines, message",
    [
        (
            "unnamed_extra_column",
            [HEADER, *[",".join([*r, "web"]) for r in _rows(6)]],
            "the header names 9 columns but its first lines have [10] fields",
        ),
        ("missing_column", [HEADER.replace(",brand", ""), "x"], "the header lacks the column(s) brand"),
        ("no_dated_line", ["garbage", "more garbage,with,a,comma"], "carries a date"),
    ],
)
def test_files_it_cannot_read_fail_the_run_naming_the_file(
    spark_resource, funnelpulse_home, kind, lines, message
):
    _write(funnelpulse_home / "data_raw" / "plain.csv", [HEADER, *[",".join(r) for r in _rows(6)]])
    bad = _write(funnelpulse_home / "data_raw" / f"{kind}.csv", lines)
    result = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-05", raise_on_error=False)
    assert not result.success
    error = _failure_message(result)
    assert str(bad) in error and message in error, error
    assert not result.get_asset_materialization_events()


def test_sensor_and_bronze_give_a_hostile_file_the_same_days(spark, funnelpulse_home):
    lines = [
        HEADER,
        "2019-11-04 10:00:00 UTC,view,1,2,,b,1.00,3,s",
        "2019-11-04T23:30:00-02:00,view,1,2,,b,1.00,3,s",  # ISO with an offset: Nov 5 UTC
        "2019-11-04T08:00:00Z,view,1,2,,b,1.00,3,s",  # ISO in UTC: Nov 4
        '"2019-11-06 10:00:00 UTC",view,1,2,,"b, inc",1.00,3,s',  # quoted fields
        "2019-11-07 25:61:00 UTC,view,1,2,,b,1.00,3,s",  # a bad clock time keeps its date
        "2019-02-30 10:00:00 UTC,view,1,2,,b,1.00,3,s",  # no such date: the anchor's
        "   ",
        "nonsense",
    ]
    path = _write(funnelpulse_home / "data_raw" / "hostile.csv", lines, newline="\r\n")
    (surveyed,) = land(spark, Lake(str(funnelpulse_home / "tables")), [lakefs.info(str(path))]).files
    assert (
        set(surveyed.lines_by_day)
        == days_owned_by(str(path))
        == {
            NOV4,
            NOV5,
            date(2019, 11, 6),
            date(2019, 11, 7),
        }
    )
    # "   " is blank (Spark's trim strips spaces); Feb 30 and "nonsense" go to the anchor day
    assert surveyed.anchor == NOV4 and surveyed.undated_lines == 2
    # the export-shaped lines are counted by their text, the others by their parsed time: an ISO
    # line of Nov 4 joins the export line of Nov 4, and the two undated kinds add up
    assert surveyed.lines_by_day == {NOV4: 1 + 1 + 2, NOV5: 1, date(2019, 11, 6): 1, date(2019, 11, 7): 1}


@pytest.mark.slow  # a range run; the quick lane keeps the one-day run
def test_each_partition_reports_its_own_day(spark_resource, funnelpulse_home):
    lines = [HEADER, *[",".join(r) for r in _rows(20)], *MALFORMED]
    _write(funnelpulse_home / "data_raw" / "x.csv", lines)
    result = _materialize(spark_resource, funnelpulse_home, "2019-11-04", "2019-11-05")
    by_partition = {
        (e.asset_key, e.partition): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    good, bad = reference.parse_files([funnelpulse_home / "data_raw" / "x.csv"])
    for day in (NOV4, NOV5):
        events = by_partition[(AssetKey(BRONZE_EVENTS.name), day.isoformat())]
        quarantine = by_partition[(AssetKey(BRONZE_QUARANTINE.name), day.isoformat())]
        expected_bad = int((bad.ingest_date == day).sum())
        assert events["dagster/row_count"].value == int((good.event_date == day).sum())
        assert events["rows_in"].value == events["dagster/row_count"].value + expected_bad
        assert quarantine["dagster/row_count"].value == expected_bad
        assert sum(quarantine["reasons"].value.values()) == expected_bad
