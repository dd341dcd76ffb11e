"""What a partition replacement leaves in a table's newest version (lake.Lake.replace_partitions)."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.runtime.spark_session import PLAIN_ENCODED_COLUMNS
from funnelpulse_dagster.tables import Table

DAYS = [date(2019, 10, 1), date(2019, 10, 2), date(2019, 10, 3)]
SCHEMA = StructType([StructField("cell", LongType()), StructField("day", DateType())])
AGGREGATE = Table("small_aggregate", "day", SCHEMA, file_per_partition=True)
PLAIN = replace(AGGREGATE, name="plain_table", file_per_partition=False)


def _files_per_day(root: Path, table: Table) -> dict[date, int]:
    """Data files per day in the table's newest version (older versions' files stay on disk)."""
    files = Lake(str(root)).data_files(table)
    return {day: sum(f.partition == day.isoformat() for f in files) for day in DAYS}


def _stored(spark, lake: Lake, table: Table) -> list[tuple]:
    return sorted((r.cell, r.day) for r in lake.read(spark, table).collect())


@pytest.mark.slow  # the quick lane keeps the lake's other writes
def test_an_aggregate_is_written_one_file_per_day_whatever_its_tasks(spark, tmp_path):
    rows = [(cell, day) for day in DAYS for cell in range(40)]
    # four tasks, each holding rows of every day: what a gold table's last shuffle leaves
    frame = spark.createDataFrame(rows, SCHEMA).repartition(4, "cell")
    lake = Lake(str(tmp_path))

    lake.replace_partitions(frame, PLAIN, DAYS)
    lake.replace_partitions(frame, AGGREGATE, DAYS)

    # without the mark each task writes its own file of each day: the test can tell the two
    assert max(_files_per_day(tmp_path, PLAIN).values()) > 1
    assert _files_per_day(tmp_path, AGGREGATE) == dict.fromkeys(DAYS, 1)
    assert _stored(spark, lake, AGGREGATE) == _stored(spark, lake, PLAIN) == sorted(rows)

    # replacing one day rewrites that day as one file and leaves the others as they were
    fewer = spark.createDataFrame([(7, DAYS[1]), (8, DAYS[1])], SCHEMA).repartition(2, "cell")
    lake.replace_partitions(fewer, AGGREGATE, [DAYS[1]])
    assert _files_per_day(tmp_path, AGGREGATE) == dict.fromkeys(DAYS, 1)
    assert _stored(spark, lake, AGGREGATE) == sorted(
        [r for r in rows if r[1] != DAYS[1]] + [(7, DAYS[1]), (8, DAYS[1])]
    )


def test_columns_that_seldom_repeat_are_written_without_a_dictionary(spark, tmp_path):
    schema = StructType(
        [
            StructField("user_id", LongType()),
            StructField("brand", StringType()),
            StructField("day", DateType()),
        ]
    )
    table = Table("events_like", "day", schema)
    # values that repeat, as a day of events has them: the writer would keep both dictionaries
    rows = [(n % 50, ("alpha", "beta")[n % 2], DAYS[0]) for n in range(500)]
    Lake(str(tmp_path)).replace_partitions(spark.createDataFrame(rows, schema), table, [DAYS[0]])

    encodings = set()
    for path in (f.uri for f in Lake(str(tmp_path)).data_files(table)):
        chunks = pq.ParquetFile(path).metadata.row_group(0)
        encodings |= {
            (chunks.column(i).path_in_schema, chunks.column(i).has_dictionary_page) for i in range(2)
        }
    assert "user_id" in PLAIN_ENCODED_COLUMNS and "brand" not in PLAIN_ENCODED_COLUMNS
    assert encodings == {("user_id", False), ("brand", True)}
