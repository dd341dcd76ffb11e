"""Shared fixtures: one real Spark for the whole test session, and sample data.

FUNNELPULSE_TEST_SPARK picks the mode every Spark test runs in: `in-process` (the default: a
classic local session in the test process) or `connect` (a real local Spark Connect server,
started here as `funnelpulse spark start` starts it; the tests are its clients, and so are the
CLI subprocesses some tests launch).

Which tests run in which pass is decided by what their code touches (`pytest_collection_modifyitems`);
a test runs in one pass unless it guards both modes:
- the Connect pass runs the tests whose code can behave differently as a Spark Connect client
  (the product's default Spark, the home's warm server, is one): every test that gets a Spark
  (the `spark_resource` fixture, directly or through another fixture), except those marked
  `spark_mode_independent` (their code under test is a pure DataFrame -> DataFrame function,
  which sends the same plan in both modes, or reads with DuckDB what Spark wrote, or they are
  the variants of a test that differ only in the data one plan reads, one variant running in the
  Connect pass);
- the in-process pass runs the rest, and again the `both_passes` tests of the Connect pass (the
  batch range run end to end, and what checks each pass's own session), which guard the
  in-process mode (`FUNNELPULSE_SPARK_MODE=in-process`, a session in the run's own process);
- the Connect pass alone runs the `connect_pass` tests (the demo and the deployment, as clients
  of the pass's warm server, the README's recipe; a few tests that need running once, placed
  there to even out the two passes, which run side by side) and the embedded broker's tests;
- a test run on each broker kind (the `broker` fixture) runs each variant once: a broker's kind
  and the Spark mode never meet (only Kafka clients talk to the broker), so the Apache Kafka
  variant runs in the in-process pass and the embedded broker's in the Connect pass;
- the quick lane (`scripts/test.sh --quick`, FUNNELPULSE_TEST_LANE=quick) is one in-process
  pass of every test but the `slow` ones and those the Connect pass runs alone."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]  # the repository root, for every test
TEST_DATA = Path(__file__).parent / "data"


SPARK_MODE = os.environ.get("FUNNELPULSE_TEST_SPARK", "in-process")

# Most JVMs the tests start live for one short run on a few thousand rows: a CLI run's Spark, a
# cluster's master, workers and executors, a broker. Their C2 (optimizing) compiler spends more
# CPU compiling Spark's code than its faster code saves them, and the suite is CPU-bound, so they
# stop at C1 (`JDK_JAVA_OPTIONS`, read by every `java` launch of the suite's processes). The pass's
# own Spark runs every test of the pass: its hot code pays C2 back, but on small data only its
# hottest code does, so C2 waits for four times the JVM's default call and loop counts.
SHORT_LIVED_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
LONG_LIVED_JVM = {  # given after JDK_JAVA_OPTIONS, so these win
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=4 -XX:Tier4InvocationThreshold=20000"
    " -XX:Tier4MinInvocationThreshold=2400 -XX:Tier4CompileThreshold=60000 -XX:Tier4BackEdgeThreshold=160000"
}


@pytest.fixture(scope="session")
def spark_resource(tmp_path_factory):
    from funnelpulse_dagster.resources.spark import SparkResource

    # the same resource the assets use, sized for tests on 2 cores. One driver JVM serves the
    # whole session (≈ 100 tests, the streaming job included); a 2 GB heap ran out once, in the
    # live job's detector after everything before it (Spark keeps ~0.5 GB of plan state)
    if SPARK_MODE == "in-process":
        yield SparkResource(
            master="local[2]",
            driver_memory="3g",
            shuffle_partitions=2,
            mode="in-process",
            spark_config=LONG_LIVED_JVM,
        )
        return
    if SPARK_MODE != "connect":
        raise ValueError(f"FUNNELPULSE_TEST_SPARK={SPARK_MODE!r}: expected in-process or connect")
    from funnelpulse_dagster.runtime import spark_server
    from funnelpulse_dagster.runtime.spark_session import spark_conf

    home = tmp_path_factory.mktemp("spark_server")
    # the pass's server outlives no test: the session's end stops it, not an idle time
    server = spark_server.start(home, conf=spark_conf("local[*]", "3g", 2, LONG_LIVED_JVM), idle_minutes=0)
    resource = SparkResource(remote=server.url, shuffle_partitions=2)
    try:
        yield resource
    finally:
        # the client first: a client whose server is gone retries in a thread that keeps the
        # test process from exiting
        resource.spark_session.stop()
        spark_server.stop(home)


@pytest.fixture(scope="session")
def spark(spark_resource):
    return spark_resource.spark_session


@pytest.fixture(scope="session")
def spark_env(spark_resource) -> dict[str, str]:
    """The variables a subprocess (a CLI run, the demo, the daemon's runs) needs to use the
    pass's Spark. In-process: each process starts its own. Connect: the server's URL, and an
    in-process master that cannot start, so a process that ignored the URL fails instead of
    passing on a Spark of its own."""
    if not spark_resource.is_remote:
        return {"FUNNELPULSE_SPARK_MODE": "in-process"}
    return {"FUNNELPULSE_SPARK_REMOTE": spark_resource.remote, "FUNNELPULSE_SPARK_MASTER": "not-in-this-pass"}


@pytest.fixture(scope="session")
def sample_raw_dir(tmp_path_factory) -> Path:
    """Three generated days (about 9 k rows) with malformed lines and one injected anomaly."""
    from funnelpulse_dagster.generator import generate

    out = tmp_path_factory.mktemp("data_raw")
    generate(out, date(2019, 10, 1), 3, seed=7, events_per_day=3_000, anomalies=1)
    return out


@pytest.fixture()
def funnelpulse_home(tmp_path, monkeypatch) -> Path:
    """An empty FUNNELPULSE_HOME (and DAGSTER_HOME) for one test."""
    home = tmp_path / "home"
    (home / "data_raw").mkdir(parents=True)
    monkeypatch.setenv("FUNNELPULSE_HOME", str(home))
    monkeypatch.delenv("FUNNELPULSE_LAKE", raising=False)
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return home


def pytest_configure(config):
    # Spark's Python workers must use this interpreter, not whatever python3 is on PATH
    import sys

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # a subprocess the test does not point at the pass's Spark starts its own in-process, never a
    # local server that would outlive the test (the default mode has its own test:
    # runtime/test_spark_connect.py)
    os.environ.setdefault("FUNNELPULSE_SPARK_MODE", "in-process")
    os.environ.setdefault("JDK_JAVA_OPTIONS", SHORT_LIVED_JVM_OPTIONS)


def runs_in_pass(item: pytest.Item, mode: str, quick_lane: bool = False) -> bool:
    """Whether the pass of Spark `mode` runs `item` (the module docstring says why)."""
    callspec = getattr(item, "callspec", None)
    broker_kind = callspec.params.get("broker") if callspec is not None else None
    embedded = "embedded_broker" in item.fixturenames or broker_kind == "embedded"
    if item.get_closest_marker("connect_pass") or embedded:
        return mode == "connect"
    connect_client_code = (
        broker_kind != "kafka"
        and "spark_resource" in item.fixturenames
        and not item.get_closest_marker("spark_mode_independent")
    )
    if mode == "connect":
        return connect_client_code
    return not connect_client_code or quick_lane or item.get_closest_marker("both_passes") is not None


def pytest_collection_modifyitems(config, items):
    quick_lane = os.environ.get("FUNNELPULSE_TEST_LANE") == "quick"
    chosen = [item for item in items if runs_in_pass(item, SPARK_MODE, quick_lane)]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen


# -- a built lake, shared by the streaming and serving tests ---------------------------------
def _local_broker(tmp_path_factory, kind: str):
    """A local broker of `kind`, started the way `funnelpulse broker start` starts it."""
    from funnelpulse_dagster.streaming import broker
    from funnelpulse_dagster_tests.live import LocalBroker, free_port

    home = tmp_path_factory.mktemp(f"broker_{kind}")
    servers = f"127.0.0.1:{free_port()}"
    broker.start(home, servers, kind=kind)
    try:
        yield LocalBroker(servers, kind)
    finally:
        broker.stop(home)


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory):
    """A one-node KRaft Apache Kafka from the pinned jars, on a loopback port, with its own log
    directory: the real broker every Kafka test runs against."""
    yield from _local_broker(tmp_path_factory, "kafka")


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory):
    """The embedded broker (Tansu), with the end-offset workaround it needs."""
    yield from _local_broker(tmp_path_factory, "embedded")


@pytest.fixture(scope="session", params=["kafka", "embedded"])
def broker(request):
    """Each local broker kind in turn, for the streaming tests that run on both."""
    return request.getfixturevalue("apache_kafka" if request.param == "kafka" else "embedded_broker")


@pytest.fixture(scope="session")
def bootstrap(apache_kafka):
    """The broker of the tests that need one Kafka (the live lake, alerts): Apache Kafka."""
    return apache_kafka


@dataclass(frozen=True)
class BatchRun:
    lake: object  # the LakeResource
    raw: Path  # the landing folder it read
    result: object  # dagster's ExecuteInProcessResult


def batch_assets() -> list:
    """The batch lakehouse's asset definitions (what batch_lakehouse_job selects by group)."""
    from funnelpulse_dagster.defs.lakehouse.anomalies import gold_anomalies_hourly_brand
    from funnelpulse_dagster.defs.lakehouse.bronze import bronze
    from funnelpulse_dagster.defs.lakehouse.gold_daily import gold_daily_tables
    from funnelpulse_dagster.defs.lakehouse.gold_hourly import gold_funnel_hourly_brand
    from funnelpulse_dagster.defs.lakehouse.session_funnel import gold_session_funnel_daily
    from funnelpulse_dagster.defs.lakehouse.silver import silver_events

    return [
        bronze,
        silver_events,
        gold_funnel_hourly_brand,
        gold_daily_tables,
        gold_anomalies_hourly_brand,
        gold_session_funnel_daily,
    ]


@pytest.fixture(scope="session")
def batch_run(tmp_path_factory, spark_resource, sample_raw_dir):
    """Bronze … batch gold for the sample's three days, built by one real range run: its result
    (test_assets checks every table, check and partition of it), its lake and its input."""
    from funnelpulse_dagster.resources import LakeResource

    root = tmp_path_factory.mktemp("batch_lake")
    lake = LakeResource(root=str(root / "tables"))
    return BatchRun(lake, sample_raw_dir, run_batch_chain(spark_resource, lake, str(sample_raw_dir)))


def run_batch_chain(spark_resource, lake, raw_uri: str):
    """One real range run of the batch lakehouse over the sample's days; its result."""
    from dagster import DagsterInstance, materialize

    from funnelpulse_dagster.resources import RawDataResource
    from funnelpulse_dagster_tests.live import DAYS

    result = materialize(
        batch_assets(),
        instance=DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[1]},
        resources={"spark": spark_resource, "lake": lake, "raw_data": RawDataResource(uri=raw_uri)},
    )
    assert result.success
    return result


def assert_same_tables(spark, lake, reference_lake, ignored: tuple[str, ...] = ()) -> None:
    """Every batch table of `lake` holds the rows of `reference_lake`'s (columns in `ignored`
    left out: where a file was, when a row was written)."""
    import pandas as pd

    from funnelpulse_dagster.tables import BATCH_TABLES

    def rows(source, table) -> pd.DataFrame:
        frame = source.read(spark, table).toPandas()
        frame = frame.drop(columns=[c for c in ignored if c in frame.columns]).astype(str)
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    for table in BATCH_TABLES.values():
        pd.testing.assert_frame_equal(rows(lake, table), rows(reference_lake, table), obj=table.name)


@pytest.fixture(scope="session")
def batch_lake(batch_run):
    """The lake of that run, shared by the streaming and serving tests."""
    return batch_run.lake


@pytest.fixture(scope="session")
def streamed(tmp_path_factory, spark_resource, batch_lake, bootstrap):
    """Replay the three days, then one sensor-style streaming run through Dagster."""
    import uuid

    from dagster import DagsterInstance, materialize

    from funnelpulse_dagster.defs.streaming.live_funnel import live_funnel
    from funnelpulse_dagster.resources import StreamingResource
    from funnelpulse_dagster_tests.live import kafka, replay

    kafka_resource = kafka(bootstrap, f"events-{uuid.uuid4().hex[:8]}")
    streaming = StreamingResource(
        checkpoint_root=str(tmp_path_factory.mktemp("checkpoints")), max_events_per_trigger=4_000
    )
    replay_result = replay(spark_resource, batch_lake, kafka_resource)
    resources = {"spark": spark_resource, "lake": batch_lake, "kafka": kafka_resource, "streaming": streaming}
    run = materialize([live_funnel], resources=resources, instance=DagsterInstance.ephemeral())
    assert run.success
    return kafka_resource, streaming, resources, replay_result, run


@pytest.fixture(scope="session")
def fake_gcs():
    """fake-gcs-server on a free port for the whole session (built by scripts/test.sh): the
    emulator the GCS connector inside Spark talks to. Its URL."""
    from funnelpulse_dagster.runtime.services import wait_for_http
    from funnelpulse_dagster_tests.live import free_port

    binary = REPO / ".venv" / "bin" / "fake-gcs-server"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: scripts/test.sh builds it (it needs the Go toolchain)")
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
         "-public-host", f"127.0.0.1:{port}", "-external-url", host, "-log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if not wait_for_http(f"{host}/storage/v1/b", timeout=30):
        proc.kill()
        raise RuntimeError("fake-gcs-server did not start")
    yield host
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="session")
def gcs_emulator():
    """A local GCS on a free port for the whole session; STORAGE_EMULATOR_HOST names it."""
    from funnelpulse_dagster.runtime.services import wait_for_http
    from funnelpulse_dagster_tests.live import free_port

    port = free_port()
    emulator = REPO / ".venv" / "bin" / "gcp-storage-emulator"
    command = [str(emulator) if emulator.exists() else "gcp-storage-emulator"]
    proc = subprocess.Popen(
        [*command, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"http://127.0.0.1:{port}"
    if not wait_for_http(f"{host}/storage/v1/b?project=test", timeout=30):
        proc.kill()
        raise RuntimeError("gcp-storage-emulator did not start")
    yield host
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # seen once on a slow machine: the emulator outlived SIGTERM
        proc.kill()
        proc.wait(10)
