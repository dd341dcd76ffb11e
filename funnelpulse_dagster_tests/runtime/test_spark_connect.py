"""Spark as a service: the modes' configuration, their errors, the home's warm local server (the
default) and `funnelpulse spark`.

The whole suite runs once in-process and once against a real local Spark Connect server
(FUNNELPULSE_TEST_SPARK=connect, see conftest.py); these tests cover what is specific to the modes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from funnelpulse_dagster.resources import build_resources
from funnelpulse_dagster.resources.spark import SparkResource
from funnelpulse_dagster.runtime.spark_session import SparkUnavailable, _hint, connect_endpoint
from funnelpulse_dagster_tests.conftest import REPO, SHORT_LIVED_JVM_OPTIONS
from funnelpulse_dagster_tests.live import free_port

pytestmark = pytest.mark.slow  # starts its own Spark Connect server

PACKAGE = REPO / "funnelpulse_dagster"
FUNNELPULSE = Path(sys.executable).with_name("funnelpulse")


def test_a_server_that_is_down_gives_a_clear_error_at_once():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SparkUnavailable, match="funnelpulse spark start"):
        _ = SparkResource(remote=f"sc://127.0.0.1:{port}").spark_session
    assert time.monotonic() - started < 10  # the client alone would retry for minutes
    # a remote endpoint's message says what to check (no traffic leaves this machine here)
    assert "reachable" in _hint("sc://spark.example:15002/;use_ssl=true")


def test_the_mode_is_chosen_by_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv("FUNNELPULSE_SPARK_REMOTE", raising=False)
    monkeypatch.delenv("FUNNELPULSE_SPARK_MODE", raising=False)
    monkeypatch.setenv("FUNNELPULSE_HOME", str(tmp_path))
    default = build_resources(resolved=True)["spark"]
    assert not default.is_remote and default.mode == "local-server" and default.home == str(tmp_path)
    monkeypatch.setenv("FUNNELPULSE_SPARK_MODE", "in-process")
    assert build_resources()["spark"].mode.env_var_name == "FUNNELPULSE_SPARK_MODE"
    with pytest.raises(SparkUnavailable, match="expected one of local-server, in-process"):
        _ = SparkResource(mode="cluster").spark_session
    monkeypatch.setenv("FUNNELPULSE_SPARK_REMOTE", "sc://spark.example:15002/;token=abc;use_ssl=true")
    spark = build_resources(resolved=True)["spark"]
    assert spark.is_remote and spark.remote == "sc://spark.example:15002/;token=abc;use_ssl=true"
    assert (
        build_resources()["spark"].remote.env_var_name == "FUNNELPULSE_SPARK_REMOTE"
    )  # shown as EnvVar in the UI
    assert connect_endpoint(spark.remote) == ("spark.example", 15002)
    assert connect_endpoint("sc://cluster") == ("cluster", 15002)
    with pytest.raises(SparkUnavailable, match="expected sc://"):
        _ = SparkResource(remote="http://spark.example").spark_session
    with pytest.raises(SparkUnavailable, match="dataproc-spark-connect"):
        _ = SparkResource(remote="dataproc-serverless").spark_session


def test_the_profile_sizes_the_settings_and_the_users_settings_win(monkeypatch):
    monkeypatch.delenv("FUNNELPULSE_SPARK_PROFILE", raising=False)
    monkeypatch.delenv("FUNNELPULSE_SPARK_CONF", raising=False)
    laptop = build_resources(resolved=True)["spark"]
    assert laptop.profile == "laptop" and laptop.sized_for.one_task_per_day
    conf = laptop.session_conf()
    assert conf["spark.sql.shuffle.partitions"] == "8"
    assert conf["spark.sql.adaptive.advisoryPartitionSizeInBytes"] == "16m"
    assert conf["spark.driver.defaultJavaOptions"] == "-XX:+UseParallelGC"
    monkeypatch.setenv("FUNNELPULSE_SPARK_PROFILE", "cluster")
    monkeypatch.setenv(
        "FUNNELPULSE_SPARK_CONF", "spark.sql.adaptive.coalescePartitions.parallelismFirst=true"
    )
    assert build_resources()["spark"].profile.env_var_name == "FUNNELPULSE_SPARK_PROFILE"
    cluster = build_resources(resolved=True)["spark"]
    assert not cluster.sized_for.one_task_per_day
    conf = cluster.session_conf()
    assert conf["spark.sql.shuffle.partitions"] == "400"
    assert "spark.sql.adaptive.advisoryPartitionSizeInBytes" not in conf  # Spark's own 64 MB
    assert "spark.driver.defaultJavaOptions" not in conf  # the JVM's own collector
    assert conf["spark.sql.adaptive.coalescePartitions.parallelismFirst"] == "true"  # the user's
    # a resource's own partition count wins over its profile's
    assert (
        SparkResource(profile="cluster", shuffle_partitions=64).session_conf()["spark.sql.shuffle.partitions"]
        == "64"
    )
    with pytest.raises(ValueError, match="expected one of laptop, cluster"):
        SparkResource(profile="desktop").session_conf()


def _home_env(home: Path) -> dict[str, str]:
    """A new shell of `home` with the default Spark configuration (a small heap, and the suite's
    options for its short-lived JVMs: conftest.py)."""
    return {
        "PATH": "/usr/bin:/bin",
        "FUNNELPULSE_HOME": str(home),
        "HOME": str(home),
        "FUNNELPULSE_SPARK_CONF": "spark.driver.memory=1g",
        "JDK_JAVA_OPTIONS": SHORT_LIVED_JVM_OPTIONS,
    }


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FUNNELPULSE), "spark", *args],
        env=_home_env(home),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _pids(status: subprocess.CompletedProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"running, pid (\d+)", status.stdout)]


_REMOTE_CLIENT = """
import sys
from funnelpulse_dagster.resources.spark import SparkResource
spark = SparkResource(remote=sys.argv[1]).spark_session
print(spark.range(1000).selectExpr("sum(id)").first()[0], spark.conf.get("spark.sql.session.timeZone"))
"""


def _materialize_bronze(home: Path, day: str) -> subprocess.Popen:
    """A `dagster asset materialize` of one bronze day in a new shell of `home`."""
    return subprocess.Popen(
        [
            str(FUNNELPULSE.with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "funnelpulse_dagster.definitions",
        ]
        + ["--select", "bronze_events", "--partition", day],
        cwd=REPO,
        env=_home_env(home) | {"DAGSTER_HOME": str(home / "dagster")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _succeeded(run: subprocess.Popen) -> None:
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0 and "RUN_SUCCESS" in output, output[-3000:]


# its own servers, the same in both passes: in the Connect pass, the shorter without it
@pytest.mark.connect_pass
def test_runs_with_the_default_configuration_share_one_warm_server(tmp_path, sample_raw_dir):
    """No Spark setting: the first run starts the home's server; `funnelpulse spark` shows it and
    starts it idempotently; a Spark Connect client elsewhere and the next run in a new shell use
    it; overlapping runs after a crash start one new server; `stop` leaves nothing running."""
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    (home / "data_raw").symlink_to(sample_raw_dir)
    assert _cli(home, "status").returncode == 3  # nothing runs yet
    _succeeded(_materialize_bronze(home, "2019-10-01"))
    status = _cli(home, "status")
    assert status.returncode == 0 and "driver memory 1g" in status.stdout, status.stdout
    (pid,) = _pids(status)
    started = _cli(home, "start")  # idempotent: the same server, and how to reach it from elsewhere
    assert started.returncode == 0 and f"pid {pid}" in started.stdout, started.stdout
    url = re.search(r"FUNNELPULSE_SPARK_REMOTE=(sc://\S+)", started.stdout).group(1)
    client = subprocess.run(
        [sys.executable, "-c", _REMOTE_CLIENT, url], check=False, capture_output=True, text=True, timeout=120
    )
    assert client.stdout.split() == ["499500", "UTC"], client.stderr[-2000:]
    _succeeded(_materialize_bronze(home, "2019-10-02"))
    assert _pids(_cli(home, "status")) == [pid]  # the second run's Spark was the first's JVM

    os.kill(pid, signal.SIGKILL)  # a crashed server is replaced by the next run, once
    overlapping = [_materialize_bronze(home, day) for day in ("2019-10-02", "2019-10-03")]
    for run in overlapping:
        _succeeded(run)
    (new_pid,) = _pids(_cli(home, "status"))
    assert new_pid != pid

    stopped = _cli(home, "stop")
    assert "stopped 1" in stopped.stdout, stopped.stdout
    assert _cli(home, "status").returncode == 3
    with pytest.raises(ProcessLookupError):
        os.kill(new_pid, 0)


def test_no_py4j_outside_the_in_process_session_and_the_server():
    """The engine never reaches into the JVM from Python, so it runs as a Connect client. The
    two places that may: the in-process session (its log level), and the server itself."""
    allowed = {"runtime/spark_session.py", "runtime/spark_server.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if re.search(r"\b(_jvm|_jsc|_jsparkSession|_gateway|sparkContext)\b", text):
            name = str(path.relative_to(PACKAGE))
            if name not in allowed:
                offenders.append(name)
    assert not offenders, offenders
