"""The lake's table format (Delta Lake): atomic day replacement under a concurrent reader, reads
as of a version or a time, the maintenance job, and the way out of an older Parquet lake."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance
from deltalake import DeltaTable
from pyspark.sql.types import DateType, LongType, StructField, StructType

from funnelpulse_dagster.lakehouse.lake import Lake, LegacyParquetTable
from funnelpulse_dagster.lakehouse.maintenance import MAINTENANCE_ORDER
from funnelpulse_dagster.resources import LakeResource
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.tables import STREAM_EVENTS, Table

DAYS = [date(2019, 10, 1), date(2019, 10, 2)]
SCHEMA = StructType([StructField("cell", LongType()), StructField("day", DateType())])
CELLS = Table("cells_by_day", "day", SCHEMA)


def _rows(per_day: int, offset: int = 0) -> list[tuple[int, date]]:
    return [(offset + n, day) for day in DAYS for n in range(per_day)]


def _counts(store: LakeStore) -> dict[str, int]:
    store.refresh()
    rows = (
        store.cursor()
        .execute("SELECT CAST(day AS VARCHAR), count(*) FROM cells_by_day GROUP BY 1")
        .fetchall()
    )
    return dict(rows)


@pytest.mark.slow  # the quick lane keeps reading as of a version or a time
def test_a_reader_during_rewrites_sees_the_old_days_or_the_new_never_a_mix(spark, tmp_path):
    """A JVM-free reader (delta-rs lists the version's files, DuckDB reads them) polls while the
    same two days are rewritten again and again, each time with another number of rows."""
    lake = Lake(str(tmp_path / "lake"))
    old, new = spark.createDataFrame(_rows(3), SCHEMA), spark.createDataFrame(_rows(5, 100), SCHEMA)
    lake.replace_partitions(old, CELLS, DAYS)
    seen: list[dict[str, int]] = []
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for round_ in range(4):
                lake.replace_partitions(new if round_ % 2 == 0 else old, CELLS, DAYS)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    store = LakeStore(str(tmp_path / "lake"), mode="parquet", tables=[CELLS])
    while not done.wait(0.02):  # a reader at 50 reads a second, leaving Spark its cores
        seen.append(_counts(store))
    writer.join()
    assert not failures, failures
    days = [d.isoformat() for d in DAYS]
    allowed = [dict.fromkeys(days, 3), dict.fromkeys(days, 5)]
    assert [s for s in seen if s not in allowed] == []
    # the reader saw both states many times: the test could have caught a mix
    assert seen.count(allowed[0]) > 1 and seen.count(allowed[1]) > 1, (len(seen), seen[:5])
    assert _counts(store) == allowed[0]  # the last round wrote the old rows


def test_a_table_reads_as_of_a_version_or_a_time(spark, tmp_path, monkeypatch, capsys):
    lake = Lake(str(tmp_path / "lake"))
    lake.replace_partitions(spark.createDataFrame(_rows(3), SCHEMA), CELLS, DAYS, tag="first-run")
    first = lake.committed_version(CELLS, "first-run")
    time.sleep(1.1)  # commit times are in milliseconds; a time between the two commits
    between = datetime.now(UTC)
    time.sleep(1.1)
    lake.replace_partitions(spark.createDataFrame([(7, DAYS[1])], SCHEMA), CELLS, [DAYS[1]], tag="second-run")

    def cells(**as_of) -> list[tuple]:
        return sorted(tuple(r) for r in lake.read(spark, CELLS, **as_of).collect())

    assert cells() == sorted([r for r in _rows(3) if r[1] == DAYS[0]] + [(7, DAYS[1])])
    assert cells(as_of=first) == cells(as_of=between) == sorted(_rows(3))
    # the JVM-free readers: delta-rs's statistics and DuckDB over that version's files
    assert lake.rows_by_partition(CELLS, first) == {"2019-10-01": 3, "2019-10-02": 3}
    assert lake.rows_by_partition(CELLS) == {"2019-10-01": 3, "2019-10-02": 1}
    assert _counts(LakeStore(str(tmp_path / "lake"), mode="parquet", tables=[CELLS], as_of=between)) == {
        "2019-10-01": 3,
        "2019-10-02": 3,
    }
    history = lake.snapshots(CELLS)
    assert [s.tag for s in history[:2]] == ["second-run", "first-run"]
    assert history[0].metrics["numDeletedRows"] == "3" and history[0].metrics["numOutputRows"] == "1"


def _gold_rows(spark, table: Table, day: date, **columns: list):
    """Rows of a gold table on `day` with the given columns' values and NULL elsewhere."""
    names = list(columns)
    frame = spark.createDataFrame(list(zip(*columns.values(), strict=True)), [n for n in names])
    return frame.selectExpr(
        *[
            f"CAST({f.name if f.name in names else 'NULL'} AS {f.dataType.simpleString()}) AS {f.name}"
            for f in table.schema.fields
            if f.name != table.partition_column
        ],
        f"DATE'{day.isoformat()}' AS {table.partition_column}",
    )


@pytest.mark.spark_mode_independent  # Spark writes the table; what is tested reads it in Python
@pytest.mark.slow  # the quick lane keeps reading as of a version or a time
def test_the_cli_lists_versions_and_reads_a_table_as_of_one(spark, tmp_path, monkeypatch, capsys):
    from funnelpulse_dagster.cli import main
    from funnelpulse_dagster.tables import GOLD_FUNNEL_DAILY_CATEGORY as table

    lake = Lake(str(tmp_path / "lake"))
    monkeypatch.setenv("FUNNELPULSE_LAKE", lake.root)
    for day, keep in ((DAYS[0], 3), (DAYS[1], 2), (DAYS[1], 1)):
        rows = _gold_rows(spark, table, day, category_root=["a", "b", "c"][:keep])
        lake.replace_partitions(rows, table, [day], tag=f"run-{keep}")
    main(["history", table.name])
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed[1:]] == ["3", "2", "1", "0"]
    assert listed[1].split()[-1] == "run-1" and "CREATE" in listed[-1]
    main(["history", table.name, "--as-of", "2"])
    assert capsys.readouterr().out.splitlines()[1:] == ["  date=2019-10-01: 3", "  date=2019-10-02: 2"]
    main(["summary"])
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(table.name)]
    assert row.split()[1:4] == ["3", "4", "2"]  # version, rows, partitions


@pytest.mark.spark_mode_independent  # Spark writes the table; what is tested reads it in Python
@pytest.mark.slow  # the quick lane keeps reading as of a version or a time
def test_the_api_lists_a_tables_versions_and_answers_as_of_a_time(spark, tmp_path):
    from fastapi.testclient import TestClient

    from funnelpulse_dagster.serving.app import create_app
    from funnelpulse_dagster.tables import GOLD_FUNNEL_DAILY_BRAND as table

    lake = Lake(str(tmp_path / "lake"))
    lake.replace_partitions(
        _gold_rows(spark, table, DAYS[0], brand=["a", "b"], views=[4, 6]), table, [DAYS[0]], tag="r1"
    )
    time.sleep(1.1)
    between = datetime.now(UTC)
    time.sleep(1.1)
    lake.replace_partitions(
        _gold_rows(spark, table, DAYS[0], brand=["a"], views=[30]), table, [DAYS[0]], tag="r2"
    )
    store = LakeStore(lake.root, mode="parquet")
    with TestClient(create_app(store, refresh_seconds=None)) as client:
        day = {"start": DAYS[0].isoformat(), "end": DAYS[0].isoformat()}
        assert client.get("/api/funnel/totals", params=day).json()["views"] == 30
        then = client.get("/api/funnel/totals", params={**day, "as_of": between.isoformat()}).json()
        assert (then["views"], then["brands"]) == (10, 2)
        rows = client.get("/api/funnel/daily", params={**day, "as_of": between.isoformat()}).json()["items"]
        assert sorted((r["brand"], r["views"]) for r in rows) == [("a", 4), ("b", 6)]
        versions = client.get(f"/api/tables/{table.name}/versions").json()["items"]
        assert [(v["version"], v["operation"], v["run_id"]) for v in versions] == [
            (2, "WRITE", "r2"),
            (1, "WRITE", "r1"),
            (0, "CREATE TABLE", None),
        ]
        assert (versions[0]["rows_added"], versions[0]["rows_removed"]) == (1, 2)
        assert client.get("/api/tables/no_such_table/versions").status_code == 404
        assert client.get("/api/funnel/totals", params={"as_of": "yesterday"}).status_code == 422
    store.close()


@pytest.mark.slow  # a real Dagster run of the maintenance job over every table
def test_the_maintenance_job_compacts_vacuums_and_expires(spark, spark_resource, tmp_path):
    from funnelpulse_dagster.defs.lakehouse.maintenance import lake_maintenance_job

    lake = Lake(str(tmp_path / "lake"))
    # the stream's table: a file per micro-batch, as the ingest query leaves it
    for batch in range(5):
        frame = spark.range(batch * 10, batch * 10 + 10).selectExpr(
            *[
                f"CAST(NULL AS {f.dataType.simpleString()}) AS {f.name}"
                for f in STREAM_EVENTS.schema.fields
                if f.name not in ("kafka_offset", "event_date")
            ],
            "id AS kafka_offset",
            "DATE'2019-10-01' AS event_date",
        )
        lake.append_batch(frame.coalesce(1), STREAM_EVENTS, "test-query", batch)
    events = sorted(r.kafka_offset for r in lake.read(spark, STREAM_EVENTS).collect())
    # a batch table rewritten three times: two versions' files are no longer needed
    for per_day in (3, 4, 5):
        lake.replace_partitions(spark.createDataFrame(_rows(per_day), SCHEMA).coalesce(1), CELLS, DAYS)
    cells_root = Path(lake.table_uri(CELLS).removeprefix("file://"))
    assert len(list(cells_root.rglob("*.parquet"))) == 6 and len(lake.data_files(STREAM_EVENTS)) == 5

    result = lake_maintenance_job.execute_in_process(
        instance=DagsterInstance.ephemeral(),
        resources={"spark": spark_resource, "lake": LakeResource(root=lake.root)},
        run_config={"ops": {"maintain_lake_tables": {"config": {"retention_hours": 0}}}},
    )
    assert result.success
    # the job as such keeps to the lake's tables; the test's own table is maintained directly
    from funnelpulse_dagster.lakehouse.maintenance import maintain_lake

    (cells,) = maintain_lake(spark, lake, 0, (CELLS,))
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    per_table = metadata["per_table"].value
    assert list(per_table) == [t.name for t in MAINTENANCE_ORDER]
    stream = per_table[STREAM_EVENTS.name]
    assert stream["data_files"] == [5, 1] and stream["files_compacted"] == 5
    assert stream["files_deleted"] == 4  # five small files became one
    assert per_table["silver_events"]["notes"] == ["no table yet"]
    assert metadata["files_compacted"].value == 5

    # the data is what it was; only the newest version's files are left, and it alone is readable
    assert sorted(r.kafka_offset for r in lake.read(spark, STREAM_EVENTS).collect()) == events
    assert (cells.files_on_disk_before, cells.files_on_disk_after) == (6, 2)
    assert sorted(tuple(r) for r in lake.read(spark, CELLS).collect()) == sorted(_rows(5))
    assert cells.oldest_version_after == cells.version
    with pytest.raises(Exception):  # noqa: B017 - delta-rs: the version's log entry is gone
        DeltaTable(lake.table_uri(CELLS).removeprefix("file://"), version=1)


@pytest.mark.spark_mode_independent  # Spark writes the table; what is tested reads it in Python
def test_a_parquet_lake_of_an_older_release_is_named_with_the_way_out(spark, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    folder = tmp_path / "lake" / CELLS.name / "day=2019-10-01"
    folder.mkdir(parents=True)
    pq.write_table(spark.createDataFrame([(1,)], "cell long").toArrow(), folder / "part-0.parquet")
    with pytest.raises(LegacyParquetTable, match="funnelpulse lake rebuild"):
        lake.read(spark, CELLS)


def test_lake_rebuild_moves_the_old_lake_aside_and_launches_the_batch_chain_over_the_days(
    tmp_path, monkeypatch
):
    """The way out: the old lake kept beside, one batch run over the days (the run itself is the
    batch chain the other tests run)."""
    from funnelpulse_dagster import cli
    from funnelpulse_dagster.lib import runs

    lake = tmp_path / "tables"
    (lake / CELLS.name / "day=2019-10-01").mkdir(parents=True)
    (lake / CELLS.name / "day=2019-10-01" / "part-0.parquet").write_bytes(b"old")
    monkeypatch.setenv("FUNNELPULSE_HOME", str(tmp_path))
    monkeypatch.setenv("FUNNELPULSE_LAKE", str(lake))
    launched = []
    monkeypatch.setattr(runs, "launch_in_process", lambda job, tags: launched.append((job, tags)) or True)
    assert cli.main(["lake", "rebuild", "--from", "2019-10-01", "--to", "2019-10-14"]) == 0
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("tables.before-")]
    assert (aside / CELLS.name / "day=2019-10-01" / "part-0.parquet").read_bytes() == b"old"
    assert not lake.exists()
    assert launched == [
        (
            "batch_lakehouse_job",
            {
                "dagster/asset_partition_range_start": "2019-10-01",
                "dagster/asset_partition_range_end": "2019-10-14",
            },
        )
    ]
