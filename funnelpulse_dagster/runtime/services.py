"""Local background services a laptop runs for FunnelPulse (the embedded Kafka broker, the warm
Spark Connect server): each in its own process group, with a pid file and a log under
FUNNELPULSE_HOME/<service>/, started once and found again by later commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceFiles:
    root: Path
    name: str

    @property
    def pid_file(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.root / f"{self.name}.log"


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


def running_pid(files: ServiceFiles) -> int | None:
    try:
        pid = int(files.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float) -> bool:
    """Whether `url` answers an HTTP request (any status) within `timeout` seconds."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.2)
    return False


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections at host:port (a name, IPv4 or IPv6)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(
    files: ServiceFiles,
    command: Sequence[str],
    host: str,
    port: int,
    wait_seconds: float,
    env: dict[str, str] | None = None,
) -> int:
    """Start `command` unless the service runs already; return its pid once `host:port` accepts
    connections. The process outlives the shell that started it and is stopped by pid."""
    pid = running_pid(files)
    if pid is not None:
        return pid
    if port_open(host, port):
        raise ServiceError(f"{host}:{port} is in use by another process")
    files.root.mkdir(parents=True, exist_ok=True)
    with files.log_file.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    files.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            files.pid_file.unlink(missing_ok=True)
            raise ServiceError(
                f"the {files.name} exited with code {process.returncode}; see {files.log_file}"
            )
        if port_open(host, port):
            return process.pid
        time.sleep(0.2)
    stop(files)
    raise ServiceError(
        f"the {files.name} did not listen on {host}:{port} within {wait_seconds}s; see {files.log_file}"
    )


def stop(files: ServiceFiles, wait_seconds: float = 15.0) -> bool:
    """Stop the service (SIGTERM, then SIGKILL); False when none was running."""
    pid = running_pid(files)
    if pid is None:
        files.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL) if _is_group_leader(pid) else os.kill(pid, signal.SIGKILL)
    try:  # reap it when it is our child (tests start and stop it in one process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    files.pid_file.unlink(missing_ok=True)
    return True


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
