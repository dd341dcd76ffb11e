"""The README's first command, end to end on two days: `scripts/demo.sh` as a new user runs it.

It must run the named jobs on a persistent instance as runs the UI places (code location
`funnelpulse`, no superseded command), fill every partition of the demo's days and nothing else
(partitions bounded by FUNNELPULSE_END_DATE), feed the topic and observe it, build the live
table, and print hints that work as printed in a new shell (three of them are run here).

It runs once per suite, in the Connect pass, as the README's "A warm Spark for every run" recipe:
every run of the demo is a client of the pass's local Spark Connect server (started as
`funnelpulse spark start` starts one), and an in-process Spark cannot start in it. That is where
it costs least: one warm JVM instead of a cold one per run. The demo's default Spark (the home's
own local server) is the same code with the URL unset, which `runtime/test_spark_connect.py` runs
through the CLI, and `runtime/test_cluster.py` through the CLI with a cluster as its master."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from funnelpulse_dagster_tests.conftest import REPO
from funnelpulse_dagster_tests.live import free_port


@pytest.mark.connect_pass
@pytest.mark.slow
def test_demo_runs_the_named_jobs_over_bounded_partitions(tmp_path, spark_env, request):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUNNELPULSE_", "DAGSTER_"))} | {
        "FUNNELPULSE_HOME": str(home),
        "DEMO_DAYS": "2",
        "DEMO_EVENTS_PER_DAY": "10000",  # what it runs, not how much: a small shop's days
        "FUNNELPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        **spark_env,  # the README's `export FUNNELPULSE_SPARK_REMOTE=…` after `funnelpulse spark start`
    }
    # the demo leaves its broker running (its hints below act on it); stopped whatever happens
    request.addfinalizer(
        lambda: subprocess.run(
            [str(REPO / ".venv/bin/funnelpulse"), "broker", "stop"], check=False, env=env, cwd=REPO
        )
    )
    done = subprocess.run(
        ["bash", "scripts/demo.sh"],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "SupersessionWarning" not in output and "deprecated" not in output.lower()

    # every command the demo prints works as printed in a new shell: it names the demo's home,
    # days and broker itself, and acts on them
    hints = [line.strip() for line in done.stdout.splitlines() if line.startswith("  cd ")]
    assert {h.split(".venv/bin/", 1)[1].split(" -")[0] for h in hints} >= {
        "funnelpulse serve",
        "dagster dev",
        "dagster sensor start",
        "funnelpulse broker status",
        "funnelpulse broker stop",
    }
    for hint in hints:
        assert f"FUNNELPULSE_HOME={home}" in hint and "FUNNELPULSE_END_DATE=2019-10-02" in hint, hint
    new_shell = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # nothing of the demo's
    by_command = {h.split(".venv/bin/", 1)[1]: h for h in hints}

    def run_hint(command: str) -> str:
        ran = subprocess.run(
            ["bash", "-c", by_command[command]],
            check=False,
            cwd="/",
            env=new_shell,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, (command, ran.stdout[-2000:], ran.stderr[-2000:])
        return ran.stdout

    run_hint("dagster sensor start -w workspace.yaml kafka_offsets_sensor")
    assert ", running, pid" in run_hint("funnelpulse broker status")  # the demo's broker
    # injected beside flagged (two days are too few to find them; the 14-day demo finds all six)
    assert "injected anomalies beside what the detector flagged" in done.stdout
    assert "injected drops" in done.stdout
    # an hour the batch and the live judge both flagged is one flagged hour
    for flagged, hours in re.findall(r"(\d+) of (\d+)\n", done.stdout):
        assert int(flagged) <= int(hours), done.stdout[-2000:]

    check = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-c", _INSPECT],
        check=False,
        env=env | {"DAGSTER_HOME": str(home / "dagster"), "FUNNELPULSE_END_DATE": "2019-10-02"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    facts = dict(line.split("=", 1) for line in check.stdout.strip().splitlines())
    assert facts["runs"] == "batch_lakehouse_job,funnel_report_job,kafka_replay_job,live_funnel_job"
    assert facts["run_locations"] == "funnelpulse"  # the UI places them: Overview → Timeline
    assert facts["kafka_offsets_sensor"] == "funnelpulse:RUNNING"  # the hint acted on the UI's location
    assert facts["batch_range"] == "2019-10-01...2019-10-02"
    assert facts["partitions"] == "2"  # bounded: two days exist, not years of them
    assert facts["unfilled"] == ""  # every partitioned asset has both days
    assert int(facts["topic_messages"]) > 0
    assert int(facts["live_rows"]) > 0

    stopped = run_hint("funnelpulse broker stop")
    assert "broker stopped" in stopped, stopped


_INSPECT = """
from dagster import AssetKey, DagsterInstance
from funnelpulse_dagster.definitions import defs
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.settings import load_settings
from funnelpulse_dagster.tables import GOLD_STREAM_FUNNEL_HOURLY_BRAND
from deltalake import DeltaTable

instance = DagsterInstance.get()
runs = instance.get_runs()
assert all(r.status.value == "SUCCESS" for r in runs), [(r.job_name, r.status) for r in runs]
print("runs=" + ",".join(sorted(r.job_name for r in runs)))
print("run_locations=" + ",".join(sorted({
    r.remote_job_origin.location_name if r.remote_job_origin else "(none)" for r in runs
})))
sensor = [s for s in instance.all_instigator_state() if s.name == "kafka_offsets_sensor"]
print("kafka_offsets_sensor=" + ",".join(
    f"{s.origin.repository_origin.code_location_origin.location_name}:{s.status.value}" for s in sensor
))
batch = next(r for r in runs if r.job_name == "batch_lakehouse_job")
print("batch_range=" + batch.tags["dagster/asset_partition_range_start"] + "..." + batch.tags["dagster/asset_partition_range_end"])
graph = defs.resolve_asset_graph()
partitioned = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is not None]
keys = graph.get(partitioned[0]).partitions_def.get_partition_keys()
print(f"partitions={len(keys)}")
print("unfilled=" + ",".join(
    k.to_user_string() for k in partitioned if set(instance.get_materialized_partitions(k)) != set(keys)
))
observation = instance.fetch_observations(AssetKey("kafka_events_topic"), limit=1).records[0]
print(f"topic_messages={observation.asset_observation.metadata['messages'].value}")
live = Lake(load_settings().lake).table_uri(GOLD_STREAM_FUNNEL_HOURLY_BRAND).removeprefix("file://")
print(f"live_rows={DeltaTable(live).to_pyarrow_dataset().count_rows()}")
"""
