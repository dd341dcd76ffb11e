"""Re-building the funnel report after the gold tables it reads change."""

from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from funnelpulse_dagster.defs.reports.jobs import REPORT_ASSET

# evaluates funnel_report's eager condition: a run of the report once any upstream gold
# partition has been materialized since the report was last built
report_automation_sensor = AutomationConditionSensorDefinition(
    "report_automation_sensor",
    target=AssetSelection.assets(REPORT_ASSET),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-materializes funnel_report after the gold tables it reads change.",
)
