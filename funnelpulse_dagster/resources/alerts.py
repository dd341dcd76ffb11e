"""Where alerts go and how (FUNNELPULSE_ALERT_* variables)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from funnelpulse_dagster.alerts.incidents import FORMATS, Route, parse_routes


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
    routes: str = Field(
        default="",
        description="Routing by severity, brand and kind (FUNNELPULSE_ALERT_ROUTES): a JSON list of "
        'routes such as {"name": "oncall", "webhook": "https://…", "format": "slack", "min_severity": '
        '"high", "brands": ["acme"], "kinds": ["drop"]}. An incident goes to every route it matches; '
        "one that matches none goes to webhook_url. A resolution goes where its opening went.",
    )
    lookback_days: int = Field(
        default=7, description="Anomalies of the newest this many days of data are alert candidates."
    )
    stream_gap_minutes: float = Field(
        default=180,
        description="A stalled stream is an incident when no new closed hour has appeared for this "
        "long while the topic holds unprocessed messages (closed hours lag by the 2-hour watermark).",
    )
    resolve_after_hours: int = Field(
        default=2,
        description="An anomaly incident is resolved (a message says so) once its brand has had this "
        "many hours with views after its last flag, none of them flagged.",
    )
    retry_seconds: float = Field(
        default=60, description="First retry delay of a failed delivery; doubled each time, up to an hour."
    )

    def parsed_routes(self) -> list[Route]:
        """The configured routes, then webhook_url as the default route (none when both are empty)."""
        return parse_routes(self.routes, self.webhook_url, self.format)
