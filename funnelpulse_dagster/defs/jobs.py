"""The named jobs. They select assets by group or key, never by importing asset objects, so each
definition is found once, in the module that defines it."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from funnelpulse_dagster.defs.streaming.live_funnel import STREAM_RUN_TAG
from funnelpulse_dagster.tables import STREAM_TABLES

REPORT_ASSET = "funnel_report"

# bronze → silver → every gold table (the anomalies included) for the selected days, as one run
batch_lakehouse_job = define_asset_job(
    "batch_lakehouse_job",
    selection=AssetSelection.groups("bronze", "silver", "gold"),
    description="Build bronze, silver and every gold table for the selected days.",
)

# unpartitioned: one report over the latest days of gold, rebuilt after gold changes
funnel_report_job = define_asset_job(
    "funnel_report_job",
    selection=AssetSelection.assets(REPORT_ASSET),
    description="Re-build the HTML funnel report from the gold tables.",
)

# one micro-batch run of the streaming queries (or a continuous run, by config); the tag lets the
# instance's run queue hold a second one back (dagster.yaml)
live_funnel_job = define_asset_job(
    "live_funnel_job",
    selection=AssetSelection.assets(*STREAM_TABLES),
    tags={STREAM_RUN_TAG: "true"},
    description="Bring gold_stream_funnel_hourly_brand and the dead letters up to the topic's end.",
)
