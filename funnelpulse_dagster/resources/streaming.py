"""Settings of the streaming job that differ between a laptop and a cluster."""

from __future__ import annotations

from collections.abc import Callable

from dagster import ConfigurableResource
from pydantic import Field
from pyspark.sql import SparkSession

from funnelpulse_dagster.resources.kafka import KafkaResource
from funnelpulse_dagster.resources.lake import LakeResource
from funnelpulse_dagster.streaming.job import LiveSettings, QueryTotals, run_stream
from funnelpulse_dagster.streaming.live_judge import LiveJudge
from funnelpulse_dagster.streaming.offsets import committed_checkpoint_offsets
from funnelpulse_dagster.tables import STREAM_INGEST_QUERY


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
        default=5,
        description="Micro-batch interval of the continuous mode: how fresh the open state is "
        "(measured by benchmarks/live_latency.py; figures in docs/performance.md).",
    )

    ledger_processing_time_seconds: int = Field(
        default=30,
        description="Micro-batch interval of the ingest and gold queries in continuous mode: they "
        "store the events and close the hours the watermark passes (at most once an hour), while the "
        "open state, on its own trigger, shows them at once; a longer interval leaves the cores to it.",
    )
    live_minute_window_minutes: int = Field(
        default=1, description="Length of the live minute windows (the open state's second table)."
    )
    live_top_brands: int = Field(
        default=5, description="Brands, by views in the open hours, that get minute windows beside the shop."
    )
    live_judge_interval_seconds: float = Field(
        default=30.0,
        description="How often a continuous run looks for hours that ended or closed since the live "
        "anomaly judge last ran, and judges them (streaming/live_judge.py).",
    )

    def live_judge(
        self, spark: SparkSession, lake: LakeResource, log: Callable[[str], None] = print
    ) -> LiveJudge:
        """The live anomaly judge for a run about to start (it judges hours closed after now)."""
        return LiveJudge.starting_now(spark, lake.plain, log, self.live_judge_interval_seconds)

    def checkpoint(self, query_name: str) -> str:
        return f"{self.checkpoint_root.rstrip('/')}/{query_name}"

    def committed_offsets(self, topic: str) -> dict[int, int] | None:
        """How far the ingest query has read `topic` (None before its first committed batch)."""
        return committed_checkpoint_offsets(self.checkpoint(STREAM_INGEST_QUERY), topic)

    def run(
        self,
        spark: SparkSession,
        kafka: KafkaResource,
        lake: LakeResource,
        continuous: bool = False,
        max_runtime_seconds: float | None = None,
        max_events_per_trigger: int | None = None,
        log: Callable[[str], None] = print,
        judge: LiveJudge | None = None,
    ) -> dict[str, QueryTotals]:
        """`run_stream` configured from the deployment's resources (the live asset and the CLI
        both use it); returns the totals per query. `judge` (`live_judge`) judges the hours that
        end or close while a continuous run runs; its `finish()` after the run judges the rest."""
        options = kafka.spark_stream_source(max_events_per_trigger or self.max_events_per_trigger)
        return run_stream(
            spark,
            options,
            lake.plain,
            self.checkpoint_root,
            available_now=not continuous,
            processing_time_seconds=self.processing_time_seconds,
            ledger_seconds=self.ledger_processing_time_seconds,
            max_runtime_seconds=max_runtime_seconds,
            log=log,
            live=LiveSettings(
                minute_window_minutes=self.live_minute_window_minutes,
                top_brands=self.live_top_brands,
            ),
            on_tick=judge.tick if judge is not None else None,
        )
