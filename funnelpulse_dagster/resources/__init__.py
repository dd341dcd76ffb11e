"""The one place that picks a deployment's resources.

Values come from the contract's environment variables (settings.py). Where a variable is set,
the resource is configured with an `EnvVar`, so the Dagster UI shows where the value came from
and a deployment changes it without touching code; where it is not, the laptop default applies.
"""

from __future__ import annotations

import os

from dagster import EnvVar

from funnelpulse_dagster.resources.lake import LakeResource
from funnelpulse_dagster.resources.raw_data import RawDataResource
from funnelpulse_dagster.resources.spark import SparkResource
from funnelpulse_dagster.settings import (
    ENV_LAKE,
    ENV_SPARK_MASTER,
    load_settings,
    spark_conf_overrides,
)

__all__ = ["LakeResource", "RawDataResource", "SparkResource", "build_resources"]


def _from_env(name: str, default: str):
    return EnvVar(name) if os.environ.get(name, "").strip() else default


def build_resources() -> dict[str, object]:
    settings = load_settings()
    return {
        "spark": SparkResource(
            master=_from_env(ENV_SPARK_MASTER, settings.spark_master), spark_config=spark_conf_overrides()
        ),
        "lake": LakeResource(root=_from_env(ENV_LAKE, settings.lake)),
        "raw_data": RawDataResource(uri=str(settings.data_raw)),
    }
