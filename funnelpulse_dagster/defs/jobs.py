"""Jobs over the assets."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from funnelpulse_dagster.defs.lakehouse.anomalies import gold_anomalies_hourly_brand
from funnelpulse_dagster.defs.lakehouse.bronze import bronze
from funnelpulse_dagster.defs.lakehouse.gold_daily import gold_daily_tables
from funnelpulse_dagster.defs.lakehouse.gold_hourly import gold_funnel_hourly_brand
from funnelpulse_dagster.defs.lakehouse.silver import silver_events
from funnelpulse_dagster.defs.reports.report_asset import funnel_report
from funnelpulse_dagster.defs.streaming.live_funnel import STREAM_RUN_TAG, kafka_events_topic, live_funnel
from funnelpulse_dagster.defs.streaming.replay import kafka_replay_job

batch_assets = [
    bronze,
    silver_events,
    gold_funnel_hourly_brand,
    gold_daily_tables,
    gold_anomalies_hourly_brand,
]

# bronze → silver → every gold table for the selected days, as one run
batch_lakehouse_job = define_asset_job(
    "batch_lakehouse_job",
    selection=AssetSelection.assets(*batch_assets),
    description="Build bronze, silver and every gold table for the selected days.",
)

streaming_assets = [kafka_events_topic, live_funnel]

# unpartitioned: one report over the latest days of gold, rebuilt after gold changes
report_assets = [funnel_report]

funnel_report_job = define_asset_job(
    "funnel_report_job",
    selection=AssetSelection.assets(funnel_report),
    description="Re-build the HTML funnel report from the gold tables.",
)

# one micro-batch run of the streaming queries (or a continuous run, by config); the tag lets the
# instance's run queue hold a second one back (dagster.yaml)
live_funnel_job = define_asset_job(
    "live_funnel_job",
    selection=AssetSelection.assets(live_funnel),
    tags={STREAM_RUN_TAG: "true"},
    description="Bring gold_stream_funnel_hourly_brand and the dead letters up to the topic's end.",
)

__all__ = [
    "batch_assets",
    "batch_lakehouse_job",
    "funnel_report_job",
    "kafka_replay_job",
    "live_funnel_job",
    "report_assets",
    "streaming_assets",
]
