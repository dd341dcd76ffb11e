"""Helpers for tests on the live path and over a built lake (shared by several test modules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import Row

from funnelpulse_dagster.defs.streaming.replay import kafka_replay_job
from funnelpulse_dagster.resources import KafkaResource
from funnelpulse_dagster.runtime.services import free_port  # noqa: F401 (the tests import it from here)
from funnelpulse_dagster.streaming.broker import END_OFFSETS_BY_KIND

# the sample's days (conftest.sample_raw_dir)
DAYS = ("2019-10-01", "2019-10-03")


@dataclass(frozen=True)
class LocalBroker:
    """A broker a test fixture started: its bootstrap servers and kind (streaming/broker.py)."""

    servers: str
    kind: str


def kafka(broker: LocalBroker, topic: str) -> KafkaResource:
    """The resource for `topic` on a test broker, with the end-offset mode its kind needs."""
    return KafkaResource(
        bootstrap_servers=broker.servers,
        topic=topic,
        topic_partitions=3,
        end_offsets=END_OFFSETS_BY_KIND[broker.kind],
    )


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


def hint_row(dimension, value, views, purchases, expected):
    return Row(
        dimension=dimension,
        value=value,
        views=views,
        purchases=purchases,
        expected_purchases=expected,
        contribution=purchases - expected,
    )


def anomaly_row(brand: str, start: datetime, kind: str, severity: str, score: float) -> dict:
    """A gold_anomalies_hourly_brand row in the table's format, for tests that need anomalies
    the detector would not flag on small data."""
    hints = [hint_row("price_band", "<10", 40, 1, 6.5), hint_row("category_root", "unknown", 60, 2, 7.0)]
    purchases = 2 if kind == "drop" else 18  # against 7.2 expected
    return {
        "window_start": start,
        "window_end": start + timedelta(hours=1),
        "brand": brand,
        "anomaly_type": kind,
        "severity": severity,
        "score": score,
        "evidence_hours": 2,
        "detectable_at": start + timedelta(hours=2),
        "views": 60,
        "purchases": purchases,
        "conversion_rate": purchases / 60,
        "expected_conversion_rate": 0.12,
        "expected_purchases": 7.2,
        "view_sessions": 40,
        "purchase_sessions": 2,
        "session_conversion_rate": 0.05,
        "expected_session_conversion_rate": 0.11,
        "expected_purchase_sessions": 4.4,
        "z_hour": -2.1 if kind == "drop" else 2.3,
        "z_brand": None,
        "z_brand_hour": None,
        "is_drop_anomaly": kind == "drop",
        "is_spike_anomaly": kind == "spike",
        "root_cause_hints": hints,
        "top_hint": "price_band=<10: 1 purchases vs 6.5 expected",
        "source": "batch",
        "window_date": start.date(),
    }


def hourly_row(brand: str, start: datetime, views: int = 80) -> dict:
    """A gold_funnel_hourly_brand row (also the live table's format): an ordinary hour of `brand`."""
    view_sessions, purchase_sessions = views // 2, 4
    return {
        "window_start": start,
        "window_end": start + timedelta(hours=1),
        "brand": brand,
        "views": views,
        "carts": 10,
        "remove_from_carts": 2,
        "purchases": 6,
        "revenue": None,
        "view_sessions": view_sessions,
        "cart_sessions": 8,
        "purchase_sessions": purchase_sessions,
        "view_users": view_sessions,
        "cart_users": 8,
        "purchase_users": purchase_sessions,
        "view_to_cart_rate": 10 / views,
        "cart_to_purchase_rate": 0.6,
        "conversion_rate": 6 / views,
        "session_conversion_rate": purchase_sessions / view_sessions,
        "window_date": start.date(),
    }
