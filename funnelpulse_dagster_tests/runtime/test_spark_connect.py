"""Spark as a service: the Connect mode's configuration, its errors, and `funnelpulse spark`.

The whole suite runs once in-process and once against a real local Spark Connect server
(FUNNELPULSE_TEST_SPARK=connect, see conftest.py); these tests cover what is specific to the mode.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from funnelpulse_dagster.resources import build_resources
from funnelpulse_dagster.resources.spark import SparkResource, SparkUnavailable, _hint, connect_endpoint
from funnelpulse_dagster_tests.conftest import REPO
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


def test_the_mode_is_chosen_by_configuration(monkeypatch):
    monkeypatch.delenv("FUNNELPULSE_SPARK_REMOTE", raising=False)
    assert not build_resources(resolved=True)["spark"].is_remote  # the default: in-process
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


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FUNNELPULSE), "spark", *args],
        env={"PATH": "/usr/bin:/bin", "FUNNELPULSE_HOME": str(home), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_funnelpulse_spark_start_serves_clients_until_stopped(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    assert _cli(home, "status").returncode == 3  # not running
    started = _cli(home, "start", "--port", str(port), "--driver-memory", "1g")
    assert started.returncode == 0, started.stderr
    url = f"sc://127.0.0.1:{port}"
    assert f"FUNNELPULSE_SPARK_REMOTE={url}" in started.stdout
    try:
        status = _cli(home, "status")
        assert status.returncode == 0 and url in status.stdout
        assert _cli(home, "start", "--port", str(port)).returncode == 0  # idempotent: same pid
        pid = re.search(r"pid (\d+)", status.stdout).group(1)
        assert f"pid {pid}" in _cli(home, "start", "--port", str(port)).stdout
        # two clients, one after the other, share the server (a new process each time)
        client = textwrap.dedent(
            f"""
            from funnelpulse_dagster.resources.spark import SparkResource
            spark = SparkResource(remote="{url}").spark_session
            print(spark.range(1000).selectExpr("sum(id)").first()[0], spark.conf.get("spark.sql.session.timeZone"))
            """
        )
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", client], capture_output=True, text=True, timeout=120, check=False
            )
            assert out.stdout.split() == ["499500", "UTC"], out.stderr[-2000:]
    finally:
        stopped = _cli(home, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert _cli(home, "status").returncode == 3


def test_no_py4j_outside_the_in_process_session_and_the_server():
    """The engine never reaches into the JVM from Python, so it runs as a Connect client. The
    two places that may: the in-process branch of the resource, and the server itself."""
    allowed = {"resources/spark.py", "runtime/spark_server.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if re.search(r"\b(_jvm|_jsc|_jsparkSession|_gateway|sparkContext)\b", text):
            name = str(path.relative_to(PACKAGE))
            if name not in allowed:
                offenders.append(name)
    assert not offenders, offenders
