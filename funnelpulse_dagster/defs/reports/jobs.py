"""The funnel report's named job."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

REPORT_ASSET = "funnel_report"

# unpartitioned: one report over the latest days of gold, rebuilt after gold changes
funnel_report_job = define_asset_job(
    "funnel_report_job",
    selection=AssetSelection.assets(REPORT_ASSET),
    description="Re-build the HTML funnel report from the gold tables.",
)
