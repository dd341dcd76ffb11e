"""The live path as assets: the Kafka topic, and the tables the streaming job keeps fresh.

The hours a run closes, and the hours that ended but are still open, are judged by the batch
detector as they end (continuous runs) or once the run stops (streaming/live_judge.py)."""

from dagster import (
    AssetExecutionContext,
    AssetObservation,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pydantic import Field
from pyspark.sql import functions as F

from funnelpulse_dagster.lib.quality import check_spec, stream_matches_batch
from funnelpulse_dagster.resources import KafkaResource, LakeResource, SparkResource, StreamingResource
from funnelpulse_dagster.rules import STREAM_MATCHES_BATCH
from funnelpulse_dagster.streaming.live_judge import newest_state
from funnelpulse_dagster.streaming.offsets import KafkaUnavailable
from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    LIVE_MINUTE_FUNNEL,
    LIVE_OPEN_HOURLY_BRAND,
    LIVE_TABLES,
    STREAM_DEAD_LETTERS,
    STREAM_EVENTS,
    STREAM_GOLD_QUERY,
    STREAM_INGEST_QUERY,
    STREAM_OPEN_QUERY,
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


def topic_observation(topic: str, ends: dict[int, int], processed: dict[int, int] | None) -> AssetObservation:
    """What the catalog shows of the topic: its end offsets, how many messages it has held, and
    how far the streaming checkpoint has read (the Kafka sensor and the replay job report it)."""
    processed = processed or {}
    return AssetObservation(
        asset_key=KAFKA_TOPIC_ASSET,
        metadata={
            "topic": topic,
            "end_offsets": MetadataValue.json({str(p): o for p, o in sorted(ends.items())}),
            "messages": sum(ends.values()),
            "processed_by_stream": sum(min(processed.get(p, 0), o) for p, o in ends.items()),
            "backlog": sum(max(o - processed.get(p, 0), 0) for p, o in ends.items()),
        },
    )


def _stream_table_spec(name: str, upstream: str, description: str) -> AssetSpec:
    return AssetSpec(
        name,
        deps=[upstream],
        description=description,
        group_name="streaming",
        kinds={"spark", "kafka", "delta"},
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
        _stream_table_spec(
            STREAM_EVENTS.name,
            KAFKA_TOPIC_ASSET,
            "Every valid event read from Kafka (bronze's typed columns plus partition, "
            "offset and timestamp), one partition per ingest micro-batch.",
        ),
        _stream_table_spec(
            GOLD_STREAM_FUNNEL_HOURLY_BRAND.name,
            STREAM_EVENTS.name,
            "Funnel per UTC hour × brand from the Kafka stream: the batch table's "
            "columns, appended when the 2-hour watermark closes an hour.",
        ),
        _stream_table_spec(
            STREAM_DEAD_LETTERS.name,
            KAFKA_TOPIC_ASSET,
            "Messages that are not valid events: raw bytes, topic/partition/offset, reason.",
        ),
        _stream_table_spec(
            LIVE_OPEN_HOURLY_BRAND.name,
            KAFKA_TOPIC_ASSET,
            "Provisional: the hours the watermark has not closed yet, per brand, as of the newest "
            "event (`as_of`); a new version after every open-state micro-batch, kept "
            "incrementally (only the cells a batch touched are recomputed).",
        ),
        _stream_table_spec(
            LIVE_MINUTE_FUNNEL.name,
            KAFKA_TOPIC_ASSET,
            "Provisional: minute windows of the open hours for the shop and its top brands; "
            "published with the open hours of the same version (one version is the whole state).",
        ),
    ],
    check_specs=[
        check_spec(
            STREAM_MATCHES_BATCH,
            GOLD_STREAM_FUNNEL_HOURLY_BRAND.name,
            blocking=False,
            additional_deps=[GOLD_FUNNEL_HOURLY_BRAND.name],
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
    judge = streaming.live_judge(session, lake, context.log.info)
    with timer.phase("stream"):
        totals = streaming.run(
            session,
            kafka,
            lake,
            continuous=config.continuous,
            max_runtime_seconds=config.max_runtime_seconds,
            max_events_per_trigger=config.max_events_per_trigger,
            log=context.log.info,
            judge=judge,
        )
    ingest_totals = totals[STREAM_INGEST_QUERY]
    try:  # the topic as the stream left it: its ends and how far the checkpoint has read
        ends = kafka.end_offsets_now(timeout=5)
        read = streaming.committed_offsets(kafka.topic)
        context.log_event(topic_observation(kafka.topic, ends, read))
    except KafkaUnavailable as exc:
        context.log.warning(f"topic not observed: {exc}")
    gold_totals = totals[STREAM_GOLD_QUERY]
    with timer.phase("anomalies"):
        judge.finish()
    with timer.phase("table_stats"):
        gold = lake.read(session, GOLD_STREAM_FUNNEL_HOURLY_BRAND)
        gold_stats = gold.agg(F.count(F.lit(1)), F.max("window_end"), F.sum("views")).first()
        dead = lake.read(session, STREAM_DEAD_LETTERS)
        reasons = {r["reason"]: r["count"] for r in dead.groupBy("reason").count().collect()}
        events_stored = lake.read(session, STREAM_EVENTS).count()
        open_state = {table.name: newest_state(session, lake.plain, table) for table in LIVE_TABLES}
    with timer.phase("check"):
        check = stream_matches_batch(gold, lake.read(session, GOLD_FUNNEL_HOURLY_BRAND))
    context.log.info(f"streaming phases (s): {timer.phases}")
    yield MaterializeResult(
        asset_key=STREAM_EVENTS.name,
        metadata={
            **ingest_totals.as_metadata(),
            "table_rows": events_stored,
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
            "anomalies_in_new_hours": judge.anomalies_in_new_hours,
            "provisional_anomalies": judge.provisional_anomalies,
        },
    )
    open_totals = totals.get(STREAM_OPEN_QUERY)
    for table in LIVE_TABLES:
        version, rows, as_of = open_state[table.name]
        yield MaterializeResult(
            asset_key=table.name,
            metadata={
                **(open_totals.as_metadata() if open_totals is not None else {}),
                "version": version if version is not None else -1,
                "table_rows": rows,
                "as_of": str(as_of) if as_of else "",
                "path": MetadataValue.path(lake.table_uri(table)),
            },
        )
    yield check
