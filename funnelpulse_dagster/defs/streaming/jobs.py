"""The live path's named job."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from funnelpulse_dagster.defs.streaming.live_funnel import STREAM_RUN_TAG
from funnelpulse_dagster.tables import STREAM_TABLES

# one micro-batch run of the streaming queries (or a continuous run, by config); the tag lets the
# instance's run queue hold a second one back (dagster.yaml)
live_funnel_job = define_asset_job(
    "live_funnel_job",
    selection=AssetSelection.assets(*STREAM_TABLES),
    tags={STREAM_RUN_TAG: "true"},
    description="Bring gold_stream_funnel_hourly_brand and the dead letters up to the topic's end.",
)
