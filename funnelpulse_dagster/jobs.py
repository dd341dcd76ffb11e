"""Jobs over the assets."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from funnelpulse_dagster.assets.bronze import bronze
from funnelpulse_dagster.assets.gold import gold_funnel_hourly_brand
from funnelpulse_dagster.assets.gold_daily import gold_daily_tables
from funnelpulse_dagster.assets.silver import silver_events

batch_assets = [bronze, silver_events, gold_funnel_hourly_brand, gold_daily_tables]

# bronze → silver → every gold table for the selected days, as one run
batch_lakehouse_job = define_asset_job(
    "batch_lakehouse_job",
    selection=AssetSelection.assets(*batch_assets),
    description="Build bronze, silver and every gold table for the selected days.",
)
