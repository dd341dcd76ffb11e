"""A Spark standalone cluster on one machine: a master and workers, each its own JVM, started
with Spark's own launch classes from the jars pyspark ships, on the project's Java.

What local mode hides (driver and executors in one JVM) shows here: closures and plans are
serialized to executors in other processes, the connector jars reach them through `spark.jars`,
and files are written by one JVM and read by another. Point a run at it with
`FUNNELPULSE_SPARK_MASTER=spark://…` (the local Spark Connect server then drives it), or use it
from tests and benchmarks. Every process is a service (runtime/services.py): its own process
group, a pid file and a log under `root`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from funnelpulse_dagster.runtime import services
from funnelpulse_dagster.runtime.jvm import ensure_java_home

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
_DAEMON_HEAP = "-Xmx256m"  # the master and workers only schedule; executors get their own heap


@dataclass(frozen=True)
class Cluster:
    root: Path
    master_url: str  # spark://host:port, what `spark.master` takes
    ui_url: str  # the master's web UI; `/json` describes the workers and applications
    workers: int

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui_url}/json", timeout=5) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        return int(self.state().get("aliveworkers", 0))


def _spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def _command(java_home: str, root: Path, main_class: str, *args: str) -> list[str]:
    spark_home = _spark_home()
    class_path = os.pathsep.join([str(Path(spark_home, "conf")), str(Path(spark_home, "jars", "*"))])
    # the property names the cluster's folder in the process list (`pgrep -f funnelpulse.cluster=…`)
    return [
        str(Path(java_home, "bin", "java")), _DAEMON_HEAP, f"-Dfunnelpulse.cluster={root}",
        "-cp", class_path, main_class, *args,
    ]  # fmt: skip


def _files(root: Path, name: str) -> services.ServiceFiles:
    return services.ServiceFiles(root, name)


def start(root: Path, workers: int = 2, cores_per_worker: int = 1, memory_per_worker: str = "2g") -> Cluster:
    """Start a master and `workers` workers (each `cores_per_worker` cores), and return once every
    worker has registered with the master."""
    java_home = ensure_java_home()
    env = {
        **os.environ,
        "JAVA_HOME": java_home,
        # executors are launched by the workers from SPARK_HOME's jars, on JAVA_HOME's Java
        "SPARK_HOME": _spark_home(),
        # pip's pyspark has no build directories for the launcher to find the Scala version in
        "SPARK_SCALA_VERSION": "2.13",
        "SPARK_LOCAL_IP": HOST,
    }
    root.mkdir(parents=True, exist_ok=True)
    port, ui_port = services.free_port(HOST), services.free_port(HOST)
    master = (
        "--host", HOST, "--port", str(port), "--webui-port", str(ui_port)
    )  # fmt: skip
    services.start(
        _files(root, "master"), _command(java_home, root, MASTER_CLASS, *master), HOST, port, 120, env
    )
    master_url = f"spark://{HOST}:{port}"
    for n in range(workers):
        worker_port = services.free_port(HOST)
        args = (
            "--host", HOST, "--port", str(worker_port), "--webui-port", str(services.free_port(HOST)),
            "--cores", str(cores_per_worker), "--memory", memory_per_worker,
            "--work-dir", str(root / f"worker-{n}"), master_url,
        )  # fmt: skip
        services.start(
            _files(root, f"worker-{n}"),
            _command(java_home, root, WORKER_CLASS, *args),
            HOST,
            worker_port,
            120,
            env,
        )
    cluster = Cluster(root, master_url, f"http://{HOST}:{ui_port}", workers)
    deadline = time.monotonic() + 120
    while cluster.alive_workers() < workers:
        if time.monotonic() > deadline:
            stop(root)
            raise services.ServiceError(f"{workers} workers did not register with {master_url}; see {root}")
        time.sleep(0.5)
    return cluster


def stop(root: Path) -> int:
    """Stop the workers (their executors with them), then the master; how many were running."""
    names = sorted(p.stem for p in root.glob("worker-*.pid")) + ["master"]
    # nothing to flush: a daemon that ignores SIGTERM for a few seconds is killed with its group
    return sum(services.stop(_files(root, name), wait_seconds=3.0) for name in names)
