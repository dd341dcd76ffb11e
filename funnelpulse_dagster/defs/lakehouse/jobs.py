"""The batch lakehouse's named job. It selects assets by group, never by importing asset
objects, so each definition is found once, in the module that defines it."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

# bronze → silver → every gold table (the anomalies included) for the selected days, as one run
batch_lakehouse_job = define_asset_job(
    "batch_lakehouse_job",
    selection=AssetSelection.groups("bronze", "silver", "gold"),
    description="Build bronze, silver and every gold table for the selected days.",
)
