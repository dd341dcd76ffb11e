"""Shared fixtures: one real local SparkSession for the whole test session, and sample data."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

TEST_DATA = Path(__file__).parent / "data"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def spark_resource():
    from funnelpulse_dagster.resources.spark import SparkResource

    # the same resource the assets use, sized for tests on 2 cores
    return SparkResource(master="local[2]", driver_memory="2g", shuffle_partitions=2)


@pytest.fixture(scope="session")
def spark(spark_resource):
    return spark_resource.spark_session


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
