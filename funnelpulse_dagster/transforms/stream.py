"""Kafka messages → events → the live hourly-brand funnel, and dead letters.

Every rule here is the batch path's own function: the nine raw fields become typed columns with
bronze's `typed_event_columns` / `conversion_reason`, the silver rules and normalisation are
silver's, and the metrics are gold's `funnel_aggregations` and `add_funnel_rates`. Only the
grouping differs: a streaming aggregation must group by an event-time window and cannot count
distinct values, so sessions and users are counted as the sizes of per-window sets (exactly
what the batch's two-level aggregation counts; an asset check compares the two tables).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from funnelpulse_dagster.tables import (
    EVENT_KEY,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    RAW_COLUMNS,
    STREAM_DEAD_LETTERS,
)
from funnelpulse_dagster.transforms.bronze import conversion_reason, typed_event_columns
from funnelpulse_dagster.transforms.gold import ACTORS, FUNNEL_STEPS, add_funnel_rates, funnel_aggregations
from funnelpulse_dagster.transforms.silver import apply_silver_rules, normalise_events

WATERMARK_HOURS = 2
WATERMARK_DELAY = f"{WATERMARK_HOURS} hours"
WINDOW_DURATION = "1 hour"
REASON = "reason"
_CORRUPT = "_corrupt_record"
# every field as text: numbers keep their digits, and bad values get bronze's precise reasons
_MESSAGE_JSON_SCHEMA = StructType(
    [StructField(c, StringType(), True) for c in RAW_COLUMNS] + [StructField(_CORRUPT, StringType(), True)]
)
# a message without these cannot be an event (docs/contracts.md, "Kafka messages")
REQUIRED_FIELDS = ("event_time", "event_type", "price")


def _message_reason() -> Column:
    reason = F.when(F.col("value").isNull() | (F.length("value") == 0), F.lit("empty message")).when(
        F.col("_json").isNull() | F.col(f"_json.{_CORRUPT}").isNotNull(),
        F.lit("not a JSON object"),
    )
    for field in REQUIRED_FIELDS:
        reason = reason.when(F.col(f"_json.{field}").isNull(), F.lit(f"missing {field}"))
    return reason.otherwise(conversion_reason())


def parse_messages(messages: DataFrame) -> DataFrame:
    """Kafka rows (tables.KAFKA_MESSAGE_SCHEMA) → the message's coordinates, the typed event
    columns, and `reason` (NULL for a valid event, else why it is a dead letter)."""
    text = F.col("value").cast("string")
    fields = F.array(*[F.col(f"_json.{c}") for c in RAW_COLUMNS])
    parsed = messages.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        "key",
        "value",
        F.from_json(text, _MESSAGE_JSON_SCHEMA, {"columnNameOfCorruptRecord": _CORRUPT}).alias("_json"),
    ).select("*", *typed_event_columns(fields))
    return parsed.withColumn(REASON, _message_reason()).drop("_json")


DEAD_LETTER_ROWS = "dead_letter_rows"
# a dead letter's own columns (the sink adds the batch id and the date partition)
DEAD_LETTER_COLUMNS = tuple(c for c in STREAM_DEAD_LETTERS.data_columns if c != "batch_id")


def collect_dead_letters() -> Column:
    """The dead letters themselves, for `DataFrame.observe`: collected while the valid events
    are written, so one pass over a micro-batch serves both tables."""
    return F.collect_list(
        F.when(F.col(REASON).isNotNull(), F.struct(*DEAD_LETTER_COLUMNS))
    ).alias(DEAD_LETTER_ROWS)


def valid_events(parsed: DataFrame) -> DataFrame:
    """The valid messages: bronze's typed event columns and the Kafka coordinates."""
    return parsed.filter(F.col(REASON).isNull()).select(
        *RAW_COLUMNS,
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        "kafka_timestamp",
    )


def clean_stream_events(events: DataFrame, watermark_delay: str = WATERMARK_DELAY) -> DataFrame:
    """Silver for a stream: the batch rules and normalisation, and de-duplication on the event
    key for duplicates that arrive within the watermark (state is kept that long, no longer)."""
    return (
        events.select(*RAW_COLUMNS)
        .transform(apply_silver_rules)
        .withWatermark("event_time", watermark_delay)
        .dropDuplicatesWithinWatermark(list(EVENT_KEY))
        .transform(normalise_events)
    )


def distinct_actor_counts() -> list[Column]:
    """Sessions and users per step as set sizes (COUNT(DISTINCT) is not allowed in a stream);
    NULL sessions / users are not counted, as in batch."""
    return [
        F.size(F.collect_set(F.when(F.col("event_type") == step, F.col(actor))))
        .cast("long")
        .alias(f"{step}_{suffix}")
        for actor, suffix in ACTORS.items()
        for step in FUNNEL_STEPS
    ]


def stream_hourly_brand_funnel(events: DataFrame) -> DataFrame:
    """gold_stream_funnel_hourly_brand from clean (watermarked) events: 1-hour event-time
    windows × brand, emitted once the watermark closes the hour (append mode)."""
    window = F.window("event_time", WINDOW_DURATION)
    return (
        events.groupBy(window.alias("_window"), F.col("brand_norm").alias("brand"))
        .agg(*funnel_aggregations(), *distinct_actor_counts())
        .select(
            F.col("_window.start").alias("window_start"),
            F.col("_window.end").alias("window_end"),
            "*",
            F.to_date("_window.start").alias("window_date"),
        )
        .drop("_window")
        .transform(add_funnel_rates)
        .select(*GOLD_STREAM_FUNNEL_HOURLY_BRAND.schema.fieldNames())
    )
