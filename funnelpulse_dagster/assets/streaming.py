"""The live path as assets: the Kafka topic, and the tables the streaming job keeps fresh."""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pydantic import Field
from pyspark.sql import functions as F

from funnelpulse_dagster.checks.quality import STREAM_MATCHES_BATCH, stream_matches_batch
from funnelpulse_dagster.resources import KafkaResource, LakeResource, SparkResource, StreamingResource
from funnelpulse_dagster.streaming.job import run_stream
from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    STREAM_DEAD_LETTERS,
    STREAM_EVENTS,
    STREAM_GOLD_QUERY,
    STREAM_INGEST_QUERY,
)
from funnelpulse_dagster.timing import PhaseTimer

KAFKA_TOPIC_ASSET = "kafka_events_topic"
STREAM_RUN_TAG = "funnelpulse/streaming"

# The topic is fed from outside Dagster's asset graph (the shop, or the replay job from bronze);
# declaring it shows where the live tables come from.
kafka_events_topic = AssetSpec(
    KAFKA_TOPIC_ASSET,
    deps=[BRONZE_EVENTS.name],
    description="Raw events on Kafka (FUNNELPULSE_KAFKA_TOPIC), JSON keyed by user_session; "
    "produced by the shop in production and by `kafka_replay_job` from bronze on a laptop.",
    group_name="streaming",
    kinds={"kafka"},
)


class StreamRunConfig(Config):
    continuous: bool = Field(
        default=False,
        description="False: process what the topic holds when the run starts, then stop "
        "(Trigger.AvailableNow). True: a micro-batch every processing_time_seconds until the "
        "run is terminated or max_runtime_seconds passes.",
    )
    max_runtime_seconds: float | None = Field(
        default=None, description="Stop a continuous run after this long."
    )
    max_events_per_trigger: int | None = Field(
        default=None, description="Override the resource's admission limit for this run."
    )


@multi_asset(
    specs=[
        AssetSpec(
            STREAM_EVENTS.name,
            deps=[KAFKA_TOPIC_ASSET],
            description="Every valid event read from Kafka (bronze's typed columns plus partition, "
            "offset and timestamp), one partition per ingest micro-batch.",
            group_name="streaming",
            kinds={"spark", "kafka", "parquet"},
        ),
        AssetSpec(
            GOLD_STREAM_FUNNEL_HOURLY_BRAND.name,
            deps=[STREAM_EVENTS.name],
            description="Funnel per UTC hour × brand from the Kafka stream: the batch table's "
            "columns, appended when the 2-hour watermark closes an hour.",
            group_name="streaming",
            kinds={"spark", "kafka", "parquet"},
        ),
        AssetSpec(
            STREAM_DEAD_LETTERS.name,
            deps=[KAFKA_TOPIC_ASSET],
            description="Messages that are not valid events: raw bytes, topic/partition/offset, reason.",
            group_name="streaming",
            kinds={"spark", "kafka", "parquet"},
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            STREAM_MATCHES_BATCH,
            asset=GOLD_STREAM_FUNNEL_HOURLY_BRAND.name,
            additional_deps=[GOLD_FUNNEL_HOURLY_BRAND.name],
            description="Every hour closed by the watermark equals batch gold_funnel_hourly_brand "
            "(on the days batch has built).",
        )
    ],
    op_tags={STREAM_RUN_TAG: "true"},
)
def live_funnel(
    context: AssetExecutionContext,
    config: StreamRunConfig,
    spark: SparkResource,
    lake: LakeResource,
    kafka: KafkaResource,
    streaming: StreamingResource,
):
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    source_format, options = kafka.spark_stream_source(
        config.max_events_per_trigger or streaming.max_events_per_trigger
    )
    with timer.phase("stream"):
        totals = run_stream(
            session,
            source_format,
            options,
            lake,
            streaming.checkpoint_root,
            available_now=not config.continuous,
            processing_time_seconds=streaming.processing_time_seconds,
            max_runtime_seconds=config.max_runtime_seconds,
            log=context.log.info,
        )
    ingest_totals = totals[STREAM_INGEST_QUERY]
    gold_totals = totals[STREAM_GOLD_QUERY]
    with timer.phase("table_stats"):
        gold = lake.read(session, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
        gold_stats = gold.agg(F.count(F.lit(1)), F.max("window_end"), F.sum("views")).first()
        dead = lake.read(session, STREAM_DEAD_LETTERS)
        reasons = {r["reason"]: r["count"] for r in dead.groupBy("reason").count().collect()}
        events_stored = lake.read(session, STREAM_EVENTS).count()
    with timer.phase("check"):
        check = stream_matches_batch(gold, lake.read(session, GOLD_FUNNEL_HOURLY_BRAND))
    context.log.info(f"streaming phases (s): {timer.phases}")
    yield MaterializeResult(
        asset_key=STREAM_EVENTS.name,
        metadata={
            **ingest_totals.as_metadata(),
            "table_rows": events_stored,
            "source": source_format,
            "path": MetadataValue.path(lake.table_uri(STREAM_EVENTS)),
            "checkpoint": streaming.checkpoint(STREAM_INGEST_QUERY),
            "seconds_by_phase": MetadataValue.json(timer.phases),
        },
    )
    yield MaterializeResult(
        asset_key=STREAM_DEAD_LETTERS.name,
        metadata={
            "dead_letters_this_run": int(ingest_totals.observed.get("dead_letters", 0)),
            "table_rows": sum(reasons.values()),
            "rows_by_reason": MetadataValue.json(reasons),
            "path": MetadataValue.path(lake.table_uri(STREAM_DEAD_LETTERS)),
        },
    )
    yield MaterializeResult(
        asset_key=GOLD_STREAM_FUNNEL_HOURLY_BRAND.name,
        metadata={
            **gold_totals.as_metadata(),
            "table_rows": gold_stats[0],
            "last_closed_hour_end": str(gold_stats[1]) if gold_stats[1] else "",
            "table_views": int(gold_stats[2] or 0),
            "path": MetadataValue.path(lake.table_uri(GOLD_STREAM_FUNNEL_HOURLY_BRAND)),
            "checkpoint": streaming.checkpoint(STREAM_GOLD_QUERY),
        },
    )
    yield check
