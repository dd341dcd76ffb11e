"""Assembles FunnelPulse's Dagster definitions: assets per layer, resources, jobs, automation."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from funnelpulse_dagster.automation import (
    daily_lakehouse_schedule,
    kafka_offsets_sensor,
    raw_files_sensor,
    report_automation_sensor,
)
from funnelpulse_dagster.jobs import (
    batch_assets,
    batch_lakehouse_job,
    funnel_report_job,
    kafka_replay_job,
    live_funnel_job,
    report_assets,
    streaming_assets,
)
from funnelpulse_dagster.resources import build_resources

defs = Definitions(
    assets=[*batch_assets, *streaming_assets, *report_assets],
    jobs=[batch_lakehouse_job, live_funnel_job, kafka_replay_job, funnel_report_job],
    schedules=[daily_lakehouse_schedule],
    sensors=[raw_files_sensor, kafka_offsets_sensor, report_automation_sensor],
    resources=build_resources(),
    # one process, one SparkSession per run: the multiprocess executor would start a JVM per step
    executor=in_process_executor,
)
