"""Settings of the streaming job that differ between a laptop and a cluster."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class StreamingResource(ConfigurableResource):
    checkpoint_root: str = Field(
        description="Where the streaming queries keep offsets and state (FUNNELPULSE_CHECKPOINTS); "
        "a path, or a URI on storage every driver can reach (gs://...)."
    )
    max_events_per_trigger: int = Field(
        default=250_000,
        description="Admission control: at most this many messages per micro-batch, so a large "
        "backlog is worked off in bounded steps and a crash redoes at most one step.",
    )
    processing_time_seconds: int = Field(
        default=30, description="Micro-batch interval of the continuous mode."
    )

    def checkpoint(self, query_name: str) -> str:
        return f"{self.checkpoint_root.rstrip('/')}/{query_name}"
