"""Helpers for tests on the live path and over a built lake (shared by several test modules)."""

from __future__ import annotations

import socket

from funnelpulse_dagster.defs.streaming.replay import kafka_replay_job
from funnelpulse_dagster.resources import KafkaResource

# the sample's days (conftest.sample_raw_dir)
DAYS = ("2019-10-01", "2019-10-03")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kafka(bootstrap: str, topic: str) -> KafkaResource:
    return KafkaResource(bootstrap_servers=bootstrap, topic=topic, topic_partitions=3)


def replay(spark_resource, lake, kafka_resource, **pace):
    result = kafka_replay_job.execute_in_process(
        run_config={
            "ops": {
                "replay_bronze_to_kafka": {"config": {"start_date": DAYS[0], "end_date": DAYS[1], **pace}}
            }
        },
        resources={"spark": spark_resource, "lake": lake, "kafka": kafka_resource},
    )
    assert result.success
    return result
