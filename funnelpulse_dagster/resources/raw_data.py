"""Where the shop's exported CSVs arrive (FUNNELPULSE_HOME/data_raw by default)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class RawDataResource(ConfigurableResource):
    """A folder of Kaggle-format CSVs (`*.csv`, any name): local path, file:// or gs://."""

    uri: str = Field(description="Folder holding the input CSV files.")
