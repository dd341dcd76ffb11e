"""The deployment's Dagster, run for real: docker/dagster.yaml as it ships (run, event-log and
schedule storage on a real PostgreSQL, compute logs in a GCS bucket through dagster-gcp's
GCSComputeLogManager on the local emulator, the queued run coordinator), and `dagster-daemon`
with workspace.yaml. An export lands; the raw-files sensor, ticking in the daemon, launches
batch_lakehouse_job for exactly its day; the run succeeds, its step logs are in the bucket, and
the report follows by declarative automation. The runs are thin Spark Connect clients, as a
deployment's runs are of its cluster's endpoint: here the Connect pass's local server, so the
test runs in that pass only. What cannot run here (images, Cloud SQL, Dataproc) is listed in
docs/deploy-gcp.md."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from funnelpulse_dagster_tests.conftest import REPO
from funnelpulse_dagster_tests.live import free_port

DAY = "2019-10-01"


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} is not installed: scripts/test.sh installs Debian's postgresql "
            "(apt-get install postgresql); the deployment test needs a real server"
        )
    return found


@pytest.fixture()
def postgres():
    """A throw-away PostgreSQL server on a free port. As root it runs as the `postgres` user
    (initdb refuses root), in a folder of its own under the system temp dir (pytest's folders
    are private to root)."""
    data, port = Path(tempfile.mkdtemp(prefix="funnelpulse-pg-")), free_port()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    run = lambda *cmd: subprocess.run([*as_owner, *cmd], check=True, capture_output=True, timeout=120)
    run(_postgres_bin("initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    run(
        _postgres_bin("pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start"
    )
    try:
        subprocess.run(
            [
                _postgres_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE dagster",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield port
    finally:
        run(_postgres_bin("pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop")
        shutil.rmtree(data, ignore_errors=True)


# once per suite, in the Connect pass: its runs are Spark Connect clients, as on GCP
# (docs/deploy-gcp.md)
@pytest.mark.connect_pass
@pytest.mark.slow
def test_daemon_on_postgres_launches_a_sensor_run_that_succeeds(
    tmp_path, postgres, gcs_emulator, monkeypatch, spark_env
):
    from dagster import DagsterInstance, DagsterRunStatus
    from google.cloud import storage

    from funnelpulse_dagster.generator import generate

    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "docker" / "dagster.yaml", dagster_home / "dagster.yaml")  # as it ships
    raw = home / "data_raw"
    generate(
        raw,
        pd.Timestamp(DAY).date(),
        1,
        events_per_day=3_000,
        seed=11,
        ground_truth_path=tmp_path / "truth.csv",
    )
    export = next(raw.glob("*.csv"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUNNELPULSE_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_PORT": str(postgres),
        "FUNNELPULSE_LOG_BUCKET": "funnelpulse-logs",
        "STORAGE_EMULATOR_HOST": gcs_emulator,
        "FUNNELPULSE_HOME": str(home),
        "FUNNELPULSE_START_DATE": DAY,
        "FUNNELPULSE_END_DATE": DAY,
        **spark_env,  # the Connect server's URL, as a deployment names its cluster's endpoint
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage.Client(project="funnelpulse-test").create_bucket("funnelpulse-logs")
    bin_dir = Path(REPO / ".venv" / "bin")
    subprocess.run(
        [str(bin_dir / "dagster"), "sensor", "start", "raw_files_sensor", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / "daemon.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    instance = DagsterInstance.get()
    try:
        deadline, runs = time.monotonic() + 600, []
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            batch = [r for r in runs if r.job_name == "batch_lakehouse_job"]
            others_done = all(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) for r in runs)
            if batch and batch[0].status == DagsterRunStatus.FAILURE:
                break
            if batch and batch[0].status == DagsterRunStatus.SUCCESS and len(runs) >= 2 and others_done:
                break
            time.sleep(3)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)
    log = (tmp_path / "daemon.log").read_text()[-4000:]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.compute_log_manager).__name__ == "GCSComputeLogManager"
    [batch] = [r for r in runs if r.job_name == "batch_lakehouse_job"]
    assert batch.status == DagsterRunStatus.SUCCESS, log
    # the sensor asked for exactly the export's day, once (its run key is the file's content)
    assert (
        batch.tags["dagster/asset_partition_range_start"],
        batch.tags["dagster/asset_partition_range_end"],
    ) == (DAY, DAY)
    assert batch.tags["funnelpulse/source_file"] == export.name
    # the report followed gold by declarative automation, on the same daemon
    assert {r.job_name: r.status for r in runs if r.job_name != "batch_lakehouse_job"} == {
        "__ASSET_JOB": DagsterRunStatus.SUCCESS
    }, log
    # every line of the export landed, malformed ones in quarantine (independent count of lines)
    lines = sum(1 for line in export.read_text().splitlines()[1:] if line.strip())
    lake = home / "tables"
    landed = DeltaTable(str(lake / "bronze_events")).to_pyarrow_dataset().count_rows()
    quarantined = (
        DeltaTable(str(lake / "bronze_quarantine")).to_pyarrow_dataset().count_rows()
        if (lake / "bronze_quarantine").exists()
        else 0
    )
    assert landed + quarantined == lines
    # the run's step logs are in the bucket
    client = storage.Client(project="funnelpulse-test")
    logs = [
        b.name
        for b in client.list_blobs("funnelpulse-logs", prefix=f"dagster-compute-logs/storage/{batch.run_id}/")
    ]
    assert any(name.endswith(".err") for name in logs), logs
