"""Assembles FunnelPulse's Dagster definitions: assets per layer, resources, jobs."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from funnelpulse_dagster.assets.bronze import bronze
from funnelpulse_dagster.assets.gold import gold_funnel_hourly_brand
from funnelpulse_dagster.assets.silver import silver_events
from funnelpulse_dagster.resources import build_resources

batch_assets = [bronze, silver_events, gold_funnel_hourly_brand]

# bronze → silver → gold for the selected days, as one run
batch_lakehouse_job = define_asset_job(
    "batch_lakehouse_job",
    selection=AssetSelection.assets(*batch_assets),
    description="Build bronze, silver and gold for the selected days.",
)

defs = Definitions(
    assets=batch_assets,
    jobs=[batch_lakehouse_job],
    resources=build_resources(),
    # one process, one SparkSession per run: the multiprocess executor would start a JVM per step
    executor=in_process_executor,
)
