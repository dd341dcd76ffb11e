"""The one place that picks a deployment's resources.

Values come from the contract's environment variables (settings.py). Where a variable is set,
the resource is configured with an `EnvVar`, so the Dagster UI shows where the value came from
and a deployment changes it without touching code; where it is not, the laptop default applies.
"""

from __future__ import annotations

import os
from functools import partial

from dagster import EnvVar

from funnelpulse_dagster.resources.alerts import AlertsResource
from funnelpulse_dagster.resources.kafka import KafkaResource
from funnelpulse_dagster.resources.lake import LakeResource
from funnelpulse_dagster.resources.raw_data import RawDataResource
from funnelpulse_dagster.resources.reports import ReportsResource
from funnelpulse_dagster.resources.spark import SparkResource
from funnelpulse_dagster.resources.streaming import StreamingResource
from funnelpulse_dagster.settings import (
    ENV_ALERT_FORMAT,
    ENV_ALERT_ROUTES,
    ENV_ALERT_WEBHOOK,
    ENV_CHECKPOINTS,
    ENV_GCP_PROJECT,
    ENV_KAFKA_BOOTSTRAP,
    ENV_KAFKA_END_OFFSETS,
    ENV_KAFKA_SASL_MECHANISM,
    ENV_KAFKA_SASL_PASSWORD,
    ENV_KAFKA_SASL_USERNAME,
    ENV_KAFKA_SECURITY_PROTOCOL,
    ENV_KAFKA_SSL_CA_LOCATION,
    ENV_KAFKA_TOPIC,
    ENV_LAKE,
    ENV_RAW,
    ENV_REPORTS,
    ENV_SPARK_MASTER,
    ENV_SPARK_MODE,
    ENV_SPARK_PROFILE,
    ENV_SPARK_REMOTE,
    load_settings,
    spark_conf_overrides,
)
from funnelpulse_dagster.streaming.broker import END_OFFSETS_BY_KIND

__all__ = [
    "AlertsResource",
    "KafkaResource",
    "LakeResource",
    "RawDataResource",
    "ReportsResource",
    "SparkResource",
    "StreamingResource",
    "build_resources",
    "kafka_resource",
]


def _value(name: str, default: str, resolved: bool = False):
    """EnvVar(name) where the variable is set (resolved to its value for use outside Dagster,
    by the CLI), else the default."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    return value if resolved else EnvVar(name)


def kafka_resource(resolved: bool = False) -> KafkaResource:
    settings = load_settings()
    _from_env = partial(_value, resolved=resolved)
    return KafkaResource(
        bootstrap_servers=_from_env(ENV_KAFKA_BOOTSTRAP, settings.kafka_bootstrap),
        topic=_from_env(ENV_KAFKA_TOPIC, settings.kafka_topic),
        security_protocol=_from_env(ENV_KAFKA_SECURITY_PROTOCOL, "PLAINTEXT"),
        sasl_mechanism=_from_env(ENV_KAFKA_SASL_MECHANISM, ""),
        sasl_username=_from_env(ENV_KAFKA_SASL_USERNAME, ""),
        sasl_password=_from_env(ENV_KAFKA_SASL_PASSWORD, ""),
        ssl_ca_location=_from_env(ENV_KAFKA_SSL_CA_LOCATION, ""),
        end_offsets=_from_env(ENV_KAFKA_END_OFFSETS, END_OFFSETS_BY_KIND.get(settings.broker, "list")),
    )


def build_resources(resolved: bool = False) -> dict[str, object]:
    """The deployment's resources; `resolved=True` gives plain values for use outside Dagster."""
    settings = load_settings()
    _from_env = partial(_value, resolved=resolved)
    return {
        "kafka": kafka_resource(resolved),
        "streaming": StreamingResource(checkpoint_root=_from_env(ENV_CHECKPOINTS, settings.checkpoints)),
        "spark": SparkResource(
            master=_from_env(ENV_SPARK_MASTER, settings.spark_master),
            remote=_from_env(ENV_SPARK_REMOTE, settings.spark_remote),
            mode=_from_env(ENV_SPARK_MODE, settings.spark_mode),
            profile=_from_env(ENV_SPARK_PROFILE, settings.spark_profile),
            home=str(settings.home),
            # a number, not an EnvVar (Dagster's EnvVar is text); settings.py says where it came from
            idle_minutes=settings.spark_idle_minutes,
            spark_config=spark_conf_overrides(),
        ),
        "lake": LakeResource(root=_from_env(ENV_LAKE, settings.lake)),
        "raw_data": RawDataResource(
            uri=_from_env(ENV_RAW, settings.raw), gcp_project=_from_env(ENV_GCP_PROJECT, settings.gcp_project)
        ),
        "alerts": AlertsResource(
            webhook_url=_from_env(ENV_ALERT_WEBHOOK, ""),
            format=_from_env(ENV_ALERT_FORMAT, "slack"),
            routes=_from_env(ENV_ALERT_ROUTES, ""),
        ),
        "reports": ReportsResource(root=_from_env(ENV_REPORTS, str(settings.reports))),
    }
