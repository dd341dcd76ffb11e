"""Where alerts go and how (FUNNELPULSE_ALERT_* variables)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from funnelpulse_dagster.alerts.incidents import FORMATS


class AlertsResource(ConfigurableResource):
    webhook_url: str = Field(
        default="",
        description="Where every new incident is POSTed as JSON (FUNNELPULSE_ALERT_WEBHOOK): a Slack "
        "incoming webhook, or any HTTP endpoint. Empty: the alerts sensor skips, saying so.",
    )
    format: str = Field(
        default="slack",
        description=f"Payload form (FUNNELPULSE_ALERT_FORMAT): one of {', '.join(FORMATS)}. 'slack': "
        "text and blocks; 'generic': the incident's fields as one JSON object.",
    )
    lookback_days: int = Field(
        default=7, description="Anomalies of the newest this many days of data are alert candidates."
    )
    stream_gap_minutes: float = Field(
        default=180,
        description="A stalled stream is an incident when no new closed hour has appeared for this "
        "long while the topic holds unprocessed messages (closed hours lag by the 2-hour watermark).",
    )
    retry_seconds: float = Field(
        default=60, description="First retry delay of a failed delivery; doubled each time, up to an hour."
    )
