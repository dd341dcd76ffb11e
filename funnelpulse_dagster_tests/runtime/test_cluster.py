"""The same code on a real multi-process Spark cluster: a standalone master and two workers, each
its own JVM with one core (runtime/standalone.py). The run is a user's: the CLI with the default
Spark mode and `FUNNELPULSE_SPARK_MASTER=spark://…`, so the home's local Spark Connect server
drives the cluster.

Driver and executors no longer share a JVM: plans and closures are serialized to other
processes, the connector jars reach the executors through `spark.jars`, and every table file is
written by one executor and read by others. The tables must equal the in-process run's.

Both tests are one user's, in order: the batch run starts the home's server on the cluster, the
stream runs on that same server, kills it mid-stream and resumes on a new one. Both run with the
`cluster` profile, as a deployment on a cluster would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.resources import LakeResource
from funnelpulse_dagster.runtime import spark_server, standalone
from funnelpulse_dagster.tables import (
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    STREAM_EVENTS,
    STREAM_INGEST_QUERY,
)
from funnelpulse_dagster_tests.conftest import REPO, assert_same_tables
from funnelpulse_dagster_tests.live import DAYS, replay
from funnelpulse_dagster_tests.live import kafka as kafka_for
from funnelpulse_dagster_tests.streaming.test_streaming import assert_equals_reference

# their own cluster and server: the same in both passes, so the Connect pass leaves them out
pytestmark = [pytest.mark.slow, pytest.mark.spark_mode_independent]

# columns that say when a row was written, not what it holds
WRITE_TIMES = ("ingested_at",)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two one-core workers on loopback."""
    root = tmp_path_factory.mktemp("standalone")
    started = standalone.start(root, workers=2, cores_per_worker=1, memory_per_worker="1536m")
    try:
        yield started
    finally:
        assert standalone.stop(root) == 3  # both workers and the master were still running


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """The user's FUNNELPULSE_HOME: its local Spark Connect server outlives a test (the stream
    test starts on the batch run's server) and stops with the module."""
    home = tmp_path_factory.mktemp("cluster_user") / "home"
    (home / "dagster").mkdir(parents=True)
    try:
        yield home
    finally:
        spark_server.stop(home)


def _user_env(home: Path, cluster, *session_conf: str, **settings: str) -> dict[str, str]:
    """A user's shell: the default Spark mode (the home's local Spark Connect server) with the
    cluster as its master, sized for a cluster (runtime/profiles.py: other shuffles, the same
    tables). The same static settings in both tests, so they share one server; `session_conf`
    adds runtime settings, which a client sets on its own session."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FUNNELPULSE_")} | {
        "FUNNELPULSE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "FUNNELPULSE_SPARK_MASTER": cluster.master_url,
        "FUNNELPULSE_SPARK_PROFILE": "cluster",
        "FUNNELPULSE_SPARK_IDLE_MINUTES": "0",
        "FUNNELPULSE_SPARK_CONF": ",".join(
            [
                "spark.driver.memory=2g",
                "spark.executor.memory=1g",
                "spark.executor.cores=1",
                f"spark.driver.host={standalone.HOST}",
                f"spark.driver.bindAddress={standalone.HOST}",
                # the profile rebuilds each Delta table's state with a job of 50 tasks, sized
                # for a production table's log; the tests' logs are a few commits, and two
                # one-core workers would spend most of a run scheduling those tasks
                "spark.databricks.delta.snapshotPartitions=2",
                *session_conf,
            ]
        ),
        **settings,
    }


def test_the_batch_chain_on_a_cluster_equals_the_in_process_run(cluster, home, batch_run, spark):
    # a user's configuration: the default mode (the home's local Spark Connect server) with the
    # cluster as its master; the CLI run is theirs too
    env = _user_env(home, cluster, FUNNELPULSE_RAW=str(batch_run.raw))
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "funnelpulse_dagster.definitions",
        "--select",
        "not group:streaming and not group:reports",
        "--partition-range",
        f"{DAYS[0]}...{DAYS[1]}",
    ]
    proc = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stdout + proc.stderr
    # the server's jobs ran on both workers' executors, not in its own JVM
    (app,) = cluster.state()["activeapps"]
    assert app["cores"] == 2 and len({e["workerid"] for e in _executors(cluster)}) == 2

    assert_same_tables(spark, LakeResource(root=str(home / "tables")), batch_run.lake, ignored=WRITE_TIMES)


def _executors(cluster) -> list[dict]:
    """The executors the workers run (the workers' JSON, one entry per executor)."""
    found = []
    for worker in cluster.state()["workers"]:
        with urllib.request.urlopen(f"{worker['webuiaddress']}/json", timeout=5) as response:
            found += [{**e, "workerid": worker["id"]} for e in json.load(response)["executors"]]
    return found


def test_a_stream_on_a_cluster_survives_its_driver_killed_exactly_once(
    cluster, home, spark, spark_resource, batch_lake, sample_raw_dir, bootstrap, tmp_path
):
    kafka = kafka_for(bootstrap, f"cluster-{uuid.uuid4().hex[:8]}")
    replay(spark_resource, batch_lake, kafka)
    checkpoints = tmp_path / "checkpoints"
    lake = Lake(root=str(tmp_path / "tables"))
    env = _user_env(
        home,
        cluster,
        # the stream's state partitions (fixed in its checkpoint), sized for two one-core
        # workers rather than the profile's tens of executors
        "spark.sql.shuffle.partitions=8",
        FUNNELPULSE_LAKE=lake.root,
        FUNNELPULSE_CHECKPOINTS=str(checkpoints),
        FUNNELPULSE_KAFKA_BOOTSTRAP=bootstrap.servers,
        FUNNELPULSE_KAFKA_END_OFFSETS=kafka.end_offsets,
        FUNNELPULSE_KAFKA_TOPIC=kafka.topic,
    )
    # the exactly-once of the tables the stream writes is tested; its anomaly judge is left out
    stream = [
        sys.executable,
        "-m",
        "funnelpulse_dagster.cli",
        "stream",
        "--max-events-per-trigger",
        "2500",
        "--no-judge",
    ]
    log = tmp_path / "stream.log"
    with log.open("w") as out:
        client = subprocess.Popen(stream, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    commits = checkpoints / STREAM_INGEST_QUERY / "commits"
    deadline = time.monotonic() + 300
    while len(list(commits.glob("[0-9]*"))) < 2 and time.monotonic() < deadline and client.poll() is None:
        time.sleep(0.05)
    assert client.poll() is None, f"the stream ended before its driver was killed:\n{log.read_text()[-3000:]}"
    (server,) = spark_server.running(home)
    # the driver (the Connect server and its JVM) dies mid-stream, and the executors on
    # the workers lose it; its client is stopped too (it would retry a dead server a while)
    os.killpg(server.pid, signal.SIGKILL)
    client.kill()
    client.wait()
    assert 2 <= len(list(commits.glob("[0-9]*")))
    # the same command again: a new server on the same cluster resumes from the checkpoint
    again = subprocess.run(
        stream, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    events = lake.read(spark, STREAM_EVENTS)
    assert events.count() == events.select("kafka_partition", "kafka_offset").distinct().count()
    assert events.count() == sum(kafka.end_offsets_now().values())
    stream_gold = lake.read(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
    assert stream_gold.groupBy("window_start", "brand").count().filter("count > 1").count() == 0
    assert_equals_reference(spark, stream_gold, sample_raw_dir)
