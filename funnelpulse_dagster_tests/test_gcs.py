"""Every path that accepts `gs://`, against a real local GCS: the landing bucket and its sensor
(dagster-gcp's GCS client), the lake served from a bucket (API answers equal to those from local
disk), `funnelpulse summary`, and a streaming checkpoint in a bucket read by the Kafka sensor
(gcp-storage-emulator); and Spark's own reads and writes through the GCS connector, bronze
reading the landing bucket, every table written to and read from a bucket, and a stream's
checkpoints and state kept in one (fake-gcs-server, which serves the JSON API the connector
speaks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context
from fastapi.testclient import TestClient

from funnelpulse_dagster.alerts.incidents import ALERT_TABLES
from funnelpulse_dagster.defs.lakehouse.automation import raw_files_sensor
from funnelpulse_dagster.defs.streaming.automation import kafka_offsets_sensor
from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.resources import RawDataResource, StreamingResource
from funnelpulse_dagster.serving import queries
from funnelpulse_dagster.serving.app import create_app
from funnelpulse_dagster.serving.store import SERVED_TABLES, LakeStore
from funnelpulse_dagster.streaming.offsets import committed_checkpoint_offsets
from funnelpulse_dagster.tables import LAKE_TABLES, STREAM_INGEST_QUERY

pytestmark = pytest.mark.slow  # over a lake built by a real materialization, and an emulator


@pytest.fixture()
def bucket(gcs_emulator, monkeypatch):
    """A fresh bucket on the emulator, with the environment pointing every client at it."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = f"fp-{uuid.uuid4().hex[:12]}"
    storage.Client(project="funnelpulse-test").create_bucket(name)
    return name


def _client():
    from google.cloud import storage

    return storage.Client(project="funnelpulse-test")


def _upload_tree(local: Path, bucket: str, prefix: str) -> None:
    """Copy a folder into the bucket (a Delta table's log names its files relative to the
    table, so a copied table is the same table; Hadoop's local `.crc` files left out)."""
    target = _client().bucket(bucket)
    for path in sorted(local.rglob("*")):
        if not path.is_file() or (path.name.endswith(".crc") and path.name.startswith(".")):
            continue
        target.blob(f"{prefix}/{path.relative_to(local).as_posix()}").upload_from_filename(str(path))


def _sensor_decision(result):
    if isinstance(result, SensorResult):
        return result.run_requests or result.skip_reason
    return result


def test_an_export_landing_in_the_bucket_asks_for_exactly_its_days(bucket, sample_raw_dir, monkeypatch):
    monkeypatch.setenv("FUNNELPULSE_START_DATE", "2019-09-01")
    raw = RawDataResource(uri=f"gs://{bucket}/exports", gcp_project="funnelpulse-test")
    instance = DagsterInstance.ephemeral()

    def tick(cursor=None):
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"raw_data": raw})
        return raw_files_sensor(context)

    assert isinstance(tick(), SkipReason)  # an empty bucket: nothing to do
    export = min(sample_raw_dir.glob("*.csv"))
    _client().bucket(bucket).blob(f"exports/{export.name}").upload_from_filename(str(export))
    _client().bucket(bucket).blob("exports/notes.txt").upload_from_string("not an export")
    _client().bucket(bucket).blob("exports/older/2019-Sep.csv").upload_from_string("a deeper folder")

    first = tick()
    # independent: the days the export's own event times fall on (pandas, UTC)
    days = pd.to_datetime(pd.read_csv(export)["event_time"], utc=True, errors="coerce").dt.date.dropna()
    expected = (min(days).isoformat(), max(days).isoformat())
    [request] = first.run_requests
    assert (
        request.tags["dagster/asset_partition_range_start"],
        request.tags["dagster/asset_partition_range_end"],
    ) == expected
    assert request.tags["funnelpulse/source_file"] == export.name
    # the fingerprint is the object's generation, md5 and size
    blob = _client().bucket(bucket).get_blob(f"exports/{export.name}")
    assert json.loads(first.cursor) == {export.name: f"{blob.generation}:{blob.md5_hash}:{blob.size}"}

    # the same objects at the next tick (and after a restart, from the stored cursor): nothing
    assert isinstance(tick(first.cursor), SkipReason)
    # the file is replaced: a new generation, a run with a new key, for its days
    text = export.read_text()
    _client().bucket(bucket).blob(f"exports/{export.name}").upload_from_string(
        text + text.splitlines()[-1] + "\n"
    )
    again = tick(first.cursor)
    [rerun] = again.run_requests
    assert rerun.run_key != request.run_key and rerun.tags == request.tags


def test_the_lake_served_from_a_bucket_answers_as_from_local_disk(
    bucket, tmp_path, batch_lake, streamed, monkeypatch
):
    local_root = Path(batch_lake.root)
    _upload_tree(local_root, bucket, "lake/tables")
    local = LakeStore(str(local_root), mode="replica", database=tmp_path / "local.duckdb")
    remote = LakeStore(f"gs://{bucket}/lake/tables", mode="replica", database=tmp_path / "remote.duckdb")
    local.refresh()
    report = remote.refresh()
    assert report.changed  # copied from the bucket
    for table in SERVED_TABLES:
        a = local.cursor().execute(f'SELECT * FROM "{table.name}" ORDER BY ALL').fetchall()
        b = remote.cursor().execute(f'SELECT * FROM "{table.name}" ORDER BY ALL').fetchall()
        assert a == b and (a or table.name == "gold_anomalies_hourly_brand"), table.name
    # the API over each: the same answers, byte for byte
    paths = [
        "/api/brands?limit=20",
        "/api/funnel/totals",
        "/api/funnel/daily?brand=",
        "/api/breakdown?dimension=category",
        "/api/live?hours=48",
        "/api/anomalies?limit=50",
    ]
    # one clock for both: /api/live's lag is measured from now, and two calls may straddle a second
    now = queries.utc_now()
    monkeypatch.setattr(queries, "utc_now", lambda: now)
    with TestClient(create_app(local, refresh_seconds=None)) as a, TestClient(create_app(remote, None)) as b:
        for path in paths:
            left, right = a.get(path), b.get(path)
            assert left.status_code == right.status_code == 200, (path, left.text[:300])
            assert left.json() == right.json(), path
    # a one-shot reader (the report's parquet mode) on gs:// copies into memory instead
    one_shot = LakeStore(f"gs://{bucket}/lake/tables", mode="parquet")
    one_shot.refresh()
    assert one_shot.mode == "replica" and one_shot.state == remote.state
    # the alerts sensor's store copies only the tables its queries read
    alerting = LakeStore(f"gs://{bucket}/lake/tables", mode="parquet", tables=ALERT_TABLES)
    alerting.refresh()
    assert set(alerting.state) == {t.name for t in ALERT_TABLES}
    assert alerting.state == {t.name: remote.state[t.name] for t in ALERT_TABLES}
    for table in ALERT_TABLES:
        a = local.cursor().execute(f'SELECT * FROM "{table.name}" ORDER BY ALL').fetchall()
        assert alerting.cursor().execute(f'SELECT * FROM "{table.name}" ORDER BY ALL').fetchall() == a
    other = next(t for t in SERVED_TABLES if t not in ALERT_TABLES)
    with pytest.raises(duckdb.CatalogException):
        alerting.cursor().execute(f'SELECT * FROM "{other.name}"')

    # `funnelpulse summary` reads the bucket too
    env = os.environ | {"FUNNELPULSE_LAKE": f"gs://{bucket}/lake/tables"}
    out = subprocess.run(
        [sys.executable, "-m", "funnelpulse_dagster.cli", "summary"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if line.strip()}
    from deltalake import DeltaTable

    for name in ("silver_events", "gold_funnel_hourly_brand"):
        expected = DeltaTable(str(local_root / name)).to_pyarrow_table().num_rows
        assert rows[name] == f"{expected:,}", name
    assert set(rows) == set(LAKE_TABLES)


def test_a_checkpoint_in_a_bucket_gives_the_kafka_sensor_its_backlog(bucket, streamed):
    kafka, streaming, _, _, _ = streamed
    local = Path(streaming.checkpoint_root)
    _upload_tree(local, bucket, "checkpoints")
    remote = StreamingResource(checkpoint_root=f"gs://{bucket}/checkpoints")
    done_local = committed_checkpoint_offsets(streaming.checkpoint(STREAM_INGEST_QUERY), kafka.topic)
    done_remote = committed_checkpoint_offsets(remote.checkpoint(STREAM_INGEST_QUERY), kafka.topic)
    assert done_remote == done_local and sum(done_remote.values()) > 0
    assert lakefs.exists(f"gs://{bucket}/checkpoints/{STREAM_INGEST_QUERY}/commits")

    def tick(checkpoints: StreamingResource):
        context = build_sensor_context(
            instance=DagsterInstance.ephemeral(), resources={"kafka": kafka, "streaming": checkpoints}
        )
        return kafka_offsets_sensor(context)

    def backlog(result) -> int:
        return result.asset_events[0].metadata["backlog"].value

    # the bucket's checkpoint gives the sensor what the local one gives (other tests may have
    # left messages on the topic: compare, then add one)
    before = backlog(tick(streaming))
    assert backlog(tick(remote)) == before
    producer = kafka.producer()
    producer.produce(kafka.topic, value=b'{"event_time": "2019-10-04 00:00:00 UTC"}', key=b"gcs")
    assert producer.flush(10) == 0
    result = tick(remote)
    assert isinstance(_sensor_decision(result)[0], RunRequest)
    assert backlog(result) == before + 1


def test_the_file_operations_around_spark_work_on_a_bucket(bucket):
    """lakefs is what the lake, the ingest and the streaming publish use around Spark's own reads
    and writes: listing, heads, moves (a streaming batch's publish), deletes (an emptied
    partition), on gs:// as on disk."""
    import gzip

    root = f"gs://{bucket}/lake"
    target = _client().bucket(bucket)
    target.blob("lake/t/day=1/part-0.parquet").upload_from_string(b"one")
    target.blob("lake/t/day=2/part-0.parquet").upload_from_string(b"two")
    target.blob("lake/in/2019-Oct.csv.gz").upload_from_string(gzip.compress(b"event_time\n2019-10-01 UTC\n"))
    assert lakefs.child_names(f"{root}/t") == {"day=1", "day=2"}
    assert lakefs.exists(f"{root}/t/day=1") and not lakefs.exists(f"{root}/t/day=3")
    assert [e.name for e in lakefs.list_files(f"{root}/in", (".csv.gz",))] == ["2019-Oct.csv.gz"]
    assert lakefs.read_head(f"{root}/in/2019-Oct.csv.gz").startswith(b"event_time\n2019-10-01")
    assert [e.uri for e in lakefs.list_tree(f"{root}/t", ".parquet")] == [
        f"{root}/t/day=1/part-0.parquet",
        f"{root}/t/day=2/part-0.parquet",
    ]
    assert lakefs.child_names(f"{root}/t") == {"day=1", "day=2"}
    assert lakefs.read_text(f"{root}/t/day=2/part-0.parquet") == "two"
    lakefs.delete_dir(f"{root}/t/day=1")
    assert lakefs.child_names(f"{root}/t") == {"day=2"}


# the pass's own session is told the emulator; the Connect pass's server is started without it
@pytest.mark.spark_mode_independent
def test_the_batch_chain_reads_and_writes_gs_inside_spark(
    fake_gcs, monkeypatch, spark, spark_resource, batch_run
):
    """FUNNELPULSE_RAW and FUNNELPULSE_LAKE in a bucket: bronze reads the exports from it through
    Spark's GCS connector, every table is written there and read back, and the tables equal the
    local run's."""
    from google.cloud import storage

    from funnelpulse_dagster.resources import LakeResource
    from funnelpulse_dagster.runtime.spark_session import gcs_emulator_settings
    from funnelpulse_dagster.tables import BATCH_TABLES, BRONZE_INGEST_LEDGER
    from funnelpulse_dagster_tests.conftest import assert_same_tables, run_batch_chain

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    # the running session learns the emulator (a new session reads STORAGE_EMULATOR_HOST itself)
    for key, value in gcs_emulator_settings(fake_gcs).items():
        spark.conf.set(key, value)
    name = f"fp-{uuid.uuid4().hex[:12]}"
    bucket = storage.Client(project="funnelpulse-test").create_bucket(name)
    for path in sorted(batch_run.raw.glob("*.csv")):
        bucket.blob(f"raw/{path.name}").upload_from_filename(str(path))
    lake = LakeResource(root=f"gs://{name}/lake")
    run_batch_chain(spark_resource, lake, f"gs://{name}/raw")
    # the tables are in the bucket, written by Spark, and hold the local run's rows (where the
    # files are, what the store says of them and when the ledger was written aside)
    assert {b.name.split("/")[1] for b in bucket.list_blobs(prefix="lake/")} >= set(BATCH_TABLES)
    where = ("source_file", "file_modified_at", "file_fingerprint", "ingested_at")
    assert_same_tables(spark, lake, batch_run.lake, ignored=where)
    # the ledger names the exports by their bucket URIs
    ledger = lake.read(spark, BRONZE_INGEST_LEDGER).toPandas()
    assert set(ledger.source_file) == {f"gs://{name}/raw/{p.name}" for p in batch_run.raw.glob("*.csv")}


@pytest.mark.spark_mode_independent
def test_a_stream_keeps_its_checkpoints_and_state_in_a_bucket_and_resumes_exactly(
    fake_gcs, monkeypatch, spark, tmp_path, apache_kafka
):
    """FUNNELPULSE_CHECKPOINTS in a bucket: the three queries keep their offsets and commits there
    through the GCS connector, the gold query its RocksDB state, and the open state its cells and
    keys files; a second run resumes from the bucket's checkpoints and stores every message once.

    The lake stays on local disk here: the open state's tables are written by delta-rs, whose
    uploads (the XML API's plain PUT) neither emulator serves (fake-gcs-server asks for an
    `uploadType`); Spark's own Delta writes to a bucket are `test_the_batch_chain_reads_and_writes_gs_inside_spark`'s."""
    from google.cloud import storage

    from funnelpulse_dagster.lakehouse.lake import Lake
    from funnelpulse_dagster.runtime.spark_session import gcs_emulator_settings
    from funnelpulse_dagster.streaming.job import run_stream
    from funnelpulse_dagster.tables import (
        GOLD_STREAM_FUNNEL_HOURLY_BRAND,
        LIVE_OPEN_HOURLY_BRAND,
        STREAM_EVENTS,
        STREAM_GOLD_QUERY,
        STREAM_OPEN_QUERY,
    )
    from funnelpulse_dagster_tests.live import kafka as kafka_for

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    for key, value in gcs_emulator_settings(fake_gcs).items():
        spark.conf.set(key, value)
    name = f"fp-{uuid.uuid4().hex[:12]}"
    bucket = storage.Client(project="funnelpulse-test").create_bucket(name)
    kafka = kafka_for(apache_kafka, f"gcs-{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic()

    def produce(first: int, count: int) -> None:
        producer = kafka.producer()
        for i in range(first, first + count):
            event = {"event_time": f"2019-10-01 {8 + i // 100:02d}:{i % 60:02d}:00 UTC", "event_type": "view",
                     "product_id": i, "category_id": 1, "category_code": None, "brand": "acme",
                     "price": "1.00", "user_id": i, "user_session": f"s{i}"}  # fmt: skip
            producer.produce(kafka.topic, value=json.dumps(event).encode(), key=str(i).encode())
        assert producer.flush(10) == 0

    lake, checkpoints = Lake(root=str(tmp_path / "tables")), f"gs://{name}/checkpoints"
    options = kafka.spark_stream_source(1000)  # one micro-batch a run
    produce(0, 250)
    run_stream(spark, options, lake, checkpoints, log=lambda _: None)
    produce(250, 120)
    totals = run_stream(spark, options, lake, checkpoints, log=lambda _: None)
    assert totals[STREAM_INGEST_QUERY].input_rows == 120  # the second run read only what was new

    events = lake.read(spark, STREAM_EVENTS)
    assert events.count() == events.select("kafka_partition", "kafka_offset").distinct().count() == 370
    # every view counted once: in the hours the gold query closed, plus the newest open state's
    closed = lake.read(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND).toPandas()
    open_hours = lake.read(spark, LIVE_OPEN_HOURLY_BRAND).toPandas()
    newest = open_hours[(open_hours.version == open_hours.version.max())]
    newest = newest[~newest.window_start.isin(closed.window_start)]
    assert closed.views.sum() > 0 and closed.views.sum() + newest.views.sum() == 370
    stored = {b.name for b in bucket.list_blobs(prefix="checkpoints/")}
    for query in (STREAM_INGEST_QUERY, STREAM_GOLD_QUERY, STREAM_OPEN_QUERY):
        assert any(n.startswith(f"checkpoints/{query}/commits/") for n in stored), query
    assert any(n.startswith(f"checkpoints/{STREAM_GOLD_QUERY}/state/") for n in stored)
    for kind in ("cells", "keys"):  # the open state's cells and its counted keys
        assert any(n.startswith(f"checkpoints/{STREAM_OPEN_QUERY}_cells/{kind}-") for n in stored), kind
