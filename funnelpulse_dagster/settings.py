"""Deployment settings: the environment variables of the configuration contract.

Every variable has a working default so that a laptop with nothing but Python runs the platform;
a cluster deployment sets them instead of editing code (see docs/configuration.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from funnelpulse_dagster.runtime.profiles import LAPTOP

ENV_HOME = "FUNNELPULSE_HOME"
ENV_LAKE = "FUNNELPULSE_LAKE"
# where the shop's exports land: a folder, or gs://bucket/prefix (default $FUNNELPULSE_HOME/data_raw)
ENV_RAW = "FUNNELPULSE_RAW"
# the GCP project of the GCS client (dagster-gcp's GCSResource); credentials come from the environment
ENV_GCP_PROJECT = "FUNNELPULSE_GCP_PROJECT"
ENV_START_DATE = "FUNNELPULSE_START_DATE"
# optional last partition day (the demo sets it to its last day); unset: up to today
ENV_END_DATE = "FUNNELPULSE_END_DATE"
ENV_KAFKA_BOOTSTRAP = "FUNNELPULSE_KAFKA_BOOTSTRAP"
ENV_KAFKA_TOPIC = "FUNNELPULSE_KAFKA_TOPIC"
ENV_SPARK_MASTER = "FUNNELPULSE_SPARK_MASTER"
# Spark Connect: sc://host:port[/;token=…;use_ssl=true] or dataproc-serverless; unset: in-process
ENV_SPARK_REMOTE = "FUNNELPULSE_SPARK_REMOTE"
# without a remote: local-server (a warm Spark this home's runs share, the default) | in-process
ENV_SPARK_MODE = "FUNNELPULSE_SPARK_MODE"
# minutes without a job, a query or a client call before a local server stops itself (0: never)
ENV_SPARK_IDLE_MINUTES = "FUNNELPULSE_SPARK_IDLE_MINUTES"
# what Spark's settings are sized for: laptop (the default) | cluster (runtime/profiles.py)
ENV_SPARK_PROFILE = "FUNNELPULSE_SPARK_PROFILE"
# Beyond the contract: what differs between the embedded broker and a real Kafka.
ENV_KAFKA_SECURITY_PROTOCOL = "FUNNELPULSE_KAFKA_SECURITY_PROTOCOL"
ENV_KAFKA_SASL_MECHANISM = "FUNNELPULSE_KAFKA_SASL_MECHANISM"
ENV_KAFKA_SASL_USERNAME = "FUNNELPULSE_KAFKA_SASL_USERNAME"
ENV_KAFKA_SASL_PASSWORD = "FUNNELPULSE_KAFKA_SASL_PASSWORD"
ENV_KAFKA_SSL_CA_LOCATION = "FUNNELPULSE_KAFKA_SSL_CA_LOCATION"
# fetch (a broker whose ListOffsets under-reports: the embedded one) | list; default: the local broker's
ENV_KAFKA_END_OFFSETS = "FUNNELPULSE_KAFKA_END_OFFSETS"
# the kind of broker `funnelpulse broker start` runs: kafka (Apache Kafka, the default) | embedded
ENV_BROKER = "FUNNELPULSE_BROKER"
ENV_ALERT_WEBHOOK = "FUNNELPULSE_ALERT_WEBHOOK"  # where incidents are POSTed (unset: no alerts)
ENV_ALERT_FORMAT = "FUNNELPULSE_ALERT_FORMAT"  # slack | generic
# routing by severity, brand and kind: a JSON list of routes (alerts/incidents.py's Route)
ENV_ALERT_ROUTES = "FUNNELPULSE_ALERT_ROUTES"
ENV_REPORTS = "FUNNELPULSE_REPORTS"  # report files; default $FUNNELPULSE_HOME/reports
ENV_CHECKPOINTS = "FUNNELPULSE_CHECKPOINTS"  # streaming checkpoints; default $FUNNELPULSE_HOME/checkpoints
# the bearer token `funnelpulse serve` requires of every request (a secret; required when it
# listens beyond loopback, unless it sits behind an authenticating proxy)
ENV_SERVE_TOKEN = "FUNNELPULSE_SERVE_TOKEN"
# Extra Spark settings, `key=value` pairs separated by whitespace or commas (beyond the contract:
# executor memory on a cluster, the GCS connector's settings, JVM options).
ENV_SPARK_CONF = "FUNNELPULSE_SPARK_CONF"

DEFAULT_START_DATE = "2019-10-01"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_KAFKA_TOPIC = "funnelpulse_events"
DEFAULT_BROKER = "kafka"
DEFAULT_SPARK_MASTER = "local[*]"
DEFAULT_SPARK_MODE = "local-server"
DEFAULT_SPARK_IDLE_MINUTES = 30.0
DEFAULT_SPARK_PROFILE = LAPTOP


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """The resolved configuration, read from the environment at call time."""

    home: Path
    lake: str
    raw: str  # the landing folder or gs:// prefix of the exports
    gcp_project: str
    start_date: date
    end_date: date | None  # the last daily partition; None: partitions run up to today
    kafka_bootstrap: str
    kafka_topic: str
    broker: str  # the local broker's kind (streaming/broker.py)
    spark_master: str
    spark_remote: str  # empty: spark_mode decides
    spark_mode: str  # local-server | in-process
    spark_idle_minutes: float
    spark_profile: str  # laptop | cluster
    checkpoints: str  # a path or URI; the streaming queries' state and progress

    @property
    def data_raw(self) -> Path:
        return self.home / "data_raw"

    @property
    def reports(self) -> Path:
        return Path(_env(ENV_REPORTS) or self.home / "reports").expanduser()

    @property
    def ground_truth(self) -> Path:
        return self.home / "ground_truth"


def home_dir() -> Path:
    return Path(_env(ENV_HOME) or Path.home() / "funnelpulse").expanduser()


def spark_conf_overrides() -> dict[str, str]:
    """Parse FUNNELPULSE_SPARK_CONF; raise with the offending item when it is malformed."""
    text = _env(ENV_SPARK_CONF) or ""
    overrides: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{ENV_SPARK_CONF}: expected key=value, got {item!r}")
        overrides[key] = value
    return overrides


def _date_setting(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a date in YYYY-MM-DD form") from exc


def _float_setting(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a number") from exc


def load_settings() -> Settings:
    home = home_dir()
    start_date = _date_setting(ENV_START_DATE, _env(ENV_START_DATE) or DEFAULT_START_DATE)
    end = _env(ENV_END_DATE)
    end_date = _date_setting(ENV_END_DATE, end) if end else None
    if end_date is not None and end_date < start_date:
        raise ValueError(f"{ENV_END_DATE}={end_date} is before {ENV_START_DATE}={start_date}")
    return Settings(
        home=home,
        lake=_env(ENV_LAKE) or str(home / "tables"),
        raw=_env(ENV_RAW) or str(home / "data_raw"),
        gcp_project=_env(ENV_GCP_PROJECT) or "funnelpulse-local",
        start_date=start_date,
        end_date=end_date,
        kafka_bootstrap=_env(ENV_KAFKA_BOOTSTRAP) or DEFAULT_KAFKA_BOOTSTRAP,
        kafka_topic=_env(ENV_KAFKA_TOPIC) or DEFAULT_KAFKA_TOPIC,
        broker=_env(ENV_BROKER) or DEFAULT_BROKER,
        spark_master=_env(ENV_SPARK_MASTER) or DEFAULT_SPARK_MASTER,
        spark_remote=_env(ENV_SPARK_REMOTE) or "",
        spark_mode=_env(ENV_SPARK_MODE) or DEFAULT_SPARK_MODE,
        spark_idle_minutes=_float_setting(ENV_SPARK_IDLE_MINUTES, DEFAULT_SPARK_IDLE_MINUTES),
        spark_profile=_env(ENV_SPARK_PROFILE) or DEFAULT_SPARK_PROFILE,
        checkpoints=_env(ENV_CHECKPOINTS) or str(home / "checkpoints"),
    )
