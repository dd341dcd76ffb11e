"""The one place that owns table names, partition columns and schemas.

Every asset, check, test and benchmark takes names and schemas from here, so a table can never
be written with one layout and read with another.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Money is exact: prices are DECIMAL(12,2) and revenue DECIMAL(18,2), so totals agree to the cent.
PRICE_TYPE = DecimalType(12, 2)
REVENUE_TYPE = DecimalType(18, 2)

RAW_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
# silver de-duplicates on this key (docs/contracts.md; rules.SILVER_KEY_RULE)
EVENT_KEY = ("event_time", "user_id", "user_session", "product_id", "event_type")
PRICE_BANDS = ("<10", "10-30", "30-60", "60+")


@dataclass(frozen=True)
class Table:
    name: str
    partition_column: str
    schema: StructType  # data columns followed by the partition column
    # An aggregate small enough to write each partition as one file (Lake.replace_partitions):
    # its last shuffle spreads every day over all tasks, which would otherwise each write a
    # small file per day, and every reader opens them all (docs/performance.md).
    file_per_partition: bool = False

    @property
    def data_columns(self) -> list[str]:
        return [f.name for f in self.schema.fields if f.name != self.partition_column]


def _fields(*pairs: tuple[str, object]) -> StructType:
    return StructType([StructField(name, dtype, True) for name, dtype in pairs])


_EVENT_FIELDS = (
    ("event_time", TimestampType()),
    ("event_type", StringType()),
    ("product_id", LongType()),
    ("category_id", LongType()),
    ("category_code", StringType()),
    ("brand", StringType()),
    ("price", PRICE_TYPE),
    ("user_id", LongType()),
    ("user_session", StringType()),
)

BRONZE_EVENTS = Table(
    "bronze_events",
    "event_date",
    _fields(*_EVENT_FIELDS, ("source_file", StringType()), ("event_date", DateType())),
)

BRONZE_QUARANTINE = Table(
    "bronze_quarantine",
    "ingest_date",
    _fields(
        ("source_file", StringType()),
        ("raw_line", StringType()),
        ("reason", StringType()),
        ("ingest_date", DateType()),
    ),
)

# One row per input file and day it owns lines on, written by every bronze run for its days:
# what the file was (size, modification time, fingerprint), how many of its lines that day
# owns, and where they landed. A file that changed since its day was ingested shows a new
# fingerprint here.
BRONZE_INGEST_LEDGER = Table(
    "bronze_ingest_ledger",
    "ingest_date",
    _fields(
        ("source_file", StringType()),
        ("file_size", LongType()),
        ("file_modified_at", TimestampType()),
        ("file_fingerprint", StringType()),
        ("owned_lines", LongType()),
        ("bronze_rows", LongType()),
        ("quarantine_rows", LongType()),
        ("ingested_at", TimestampType()),
        ("ingest_date", DateType()),
    ),
)

SILVER_EVENTS = Table(
    "silver_events",
    "event_date",
    _fields(
        *_EVENT_FIELDS,
        ("brand_norm", StringType()),
        ("category_code_norm", StringType()),
        ("category_root", StringType()),
        ("price_band", StringType()),
        ("is_missing_brand", BooleanType()),
        ("is_missing_category", BooleanType()),
        ("is_missing_session", BooleanType()),
        ("event_date", DateType()),
    ),
)

FUNNEL_METRIC_FIELDS = (
    ("views", LongType()),
    ("carts", LongType()),
    ("remove_from_carts", LongType()),
    ("purchases", LongType()),
    ("revenue", REVENUE_TYPE),
    # distinct sessions / users with at least one event of the step in the grain: event counts
    # over-weight sessions that add and remove the same item many times
    ("view_sessions", LongType()),
    ("cart_sessions", LongType()),
    ("purchase_sessions", LongType()),
    ("view_users", LongType()),
    ("cart_users", LongType()),
    ("purchase_users", LongType()),
    # the rates' formulas are in rules.FUNNEL_RATES (test_rules checks the two agree)
    ("view_to_cart_rate", DoubleType()),
    ("cart_to_purchase_rate", DoubleType()),
    ("conversion_rate", DoubleType()),
    ("session_conversion_rate", DoubleType()),
)

GOLD_FUNNEL_HOURLY_BRAND = Table(
    "gold_funnel_hourly_brand",
    "window_date",
    _fields(
        ("window_start", TimestampType()),
        ("window_end", TimestampType()),
        ("brand", StringType()),
        *FUNNEL_METRIC_FIELDS,
        ("window_date", DateType()),
    ),
    file_per_partition=True,
)

GOLD_FUNNEL_DAILY_BRAND = Table(
    "gold_funnel_daily_brand",
    "date",
    _fields(("brand", StringType()), *FUNNEL_METRIC_FIELDS, ("date", DateType())),
    file_per_partition=True,
)

GOLD_FUNNEL_DAILY_CATEGORY = Table(
    "gold_funnel_daily_category",
    "date",
    _fields(("category_root", StringType()), *FUNNEL_METRIC_FIELDS, ("date", DateType())),
    file_per_partition=True,
)

GOLD_FUNNEL_HOURLY_PRICE_BAND = Table(
    "gold_funnel_hourly_price_band",
    "window_date",
    _fields(
        ("window_start", TimestampType()),
        ("window_end", TimestampType()),
        ("price_band", StringType()),
        *FUNNEL_METRIC_FIELDS,
        ("window_date", DateType()),
    ),
    file_per_partition=True,
)

# The funnel as analysts read it: sessions that viewed, then carted after a view, then purchased
# after a cart, in event-time order within the session (transforms/ordered_funnel.py), per day the
# session started × dimension (`shop`, `brand`, `category_root`, `price_band`) × value.
SHOP_DIMENSION = "shop"  # the row of the shop as a whole (its value is NULL)
ORDERED_DIMENSIONS = (SHOP_DIMENSION, "brand", "category_root", "price_band")
GOLD_SESSION_FUNNEL_DAILY = Table(
    "gold_session_funnel_daily",
    "session_date",
    _fields(
        ("dimension", StringType()),
        ("value", StringType()),  # NULL: the shop as a whole, or no brand / category
        ("viewed_sessions", LongType()),
        ("carted_sessions", LongType()),  # carted after a view
        ("purchased_sessions", LongType()),  # purchased after that cart
        ("dropped_after_view", LongType()),
        ("dropped_after_cart", LongType()),
        ("view_to_cart_rate", DoubleType()),
        ("cart_to_purchase_rate", DoubleType()),
        ("conversion_rate", DoubleType()),
        ("median_seconds_view_to_cart", DoubleType()),
        ("p90_seconds_view_to_cart", DoubleType()),
        ("median_seconds_cart_to_purchase", DoubleType()),
        ("p90_seconds_cart_to_purchase", DoubleType()),
        ("median_seconds_view_to_purchase", DoubleType()),
        ("p90_seconds_view_to_purchase", DoubleType()),
        ("session_date", DateType()),
    ),
    file_per_partition=True,
)

GOLD_TABLES = (
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
)

# One root-cause hint: a segment of the brand's hour and how far its purchases are from what
# the segment's own history predicts (contribution = purchases − expected_purchases).
ROOT_CAUSE_HINT_TYPE = StructType(
    [
        StructField("dimension", StringType(), True),  # category_root | price_band | product_id
        StructField("value", StringType(), True),  # the segment ("unknown" for NULL)
        StructField("views", LongType(), True),
        StructField("purchases", LongType(), True),
        StructField("expected_purchases", DoubleType(), True),
        StructField("contribution", DoubleType(), True),
    ]
)

GOLD_ANOMALIES_HOURLY_BRAND = Table(
    "gold_anomalies_hourly_brand",
    "window_date",
    _fields(
        ("window_start", TimestampType()),
        ("window_end", TimestampType()),
        ("brand", StringType()),
        ("anomaly_type", StringType()),  # drop | spike
        ("severity", StringType()),  # low | medium | high
        ("score", DoubleType()),  # accumulated evidence, in standard deviations
        ("evidence_hours", IntegerType()),  # consecutive hours that gave the score
        ("detectable_at", TimestampType()),  # end of the hour whose evidence first made this a flag
        ("views", LongType()),
        ("purchases", LongType()),
        ("conversion_rate", DoubleType()),
        ("expected_conversion_rate", DoubleType()),  # the hour's usual purchases / views
        ("expected_purchases", DoubleType()),
        # what the test judges: purchasing sessions among viewing sessions, and its baseline
        ("view_sessions", LongType()),
        ("purchase_sessions", LongType()),
        ("session_conversion_rate", DoubleType()),
        ("expected_session_conversion_rate", DoubleType()),
        ("expected_purchase_sessions", DoubleType()),
        ("z_hour", DoubleType()),  # this hour's own evidence
        # the seed's statistics, kept for comparison (computed on the look-back history only)
        ("z_brand", DoubleType()),
        ("z_brand_hour", DoubleType()),
        ("is_drop_anomaly", BooleanType()),
        ("is_spike_anomaly", BooleanType()),
        ("root_cause_hints", ArrayType(ROOT_CAUSE_HINT_TYPE)),
        ("top_hint", StringType()),
        ("source", StringType()),  # batch | stream
        ("window_date", DateType()),
    ),
)

BATCH_TABLES = {
    t.name: t
    for t in (
        BRONZE_EVENTS,
        BRONZE_QUARANTINE,
        BRONZE_INGEST_LEDGER,
        SILVER_EVENTS,
        *GOLD_TABLES,
        GOLD_ANOMALIES_HOURLY_BRAND,
        GOLD_SESSION_FUNNEL_DAILY,
    )
}

# The live path. Its gold has the batch table's exact schema: for every hour closed by the
# watermark the two must be equal (an asset check compares them).
GOLD_STREAM_FUNNEL_HOURLY_BRAND = Table(
    "gold_stream_funnel_hourly_brand", "window_date", GOLD_FUNNEL_HOURLY_BRAND.schema
)

# What Kafka hands the streaming job: the columns of Spark's own `kafka` source, which our
# Python source reproduces, so either can feed the same job.
KAFKA_MESSAGE_SCHEMA = StructType(
    [
        StructField("key", BinaryType(), True),
        StructField("value", BinaryType(), True),
        StructField("topic", StringType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
        StructField("timestamp", TimestampType(), True),
        StructField("timestampType", IntegerType(), True),
    ]
)

# Every valid event the stream has read, one partition per ingest micro-batch (published
# atomically, so the stateful gold query reads whole batches only). Also an audit trail of what
# arrived on Kafka, with its coordinates.
STREAM_EVENTS = Table(
    "stream_events",
    "batch_id",
    _fields(
        *_EVENT_FIELDS,
        ("kafka_partition", IntegerType()),
        ("kafka_offset", LongType()),
        ("kafka_timestamp", TimestampType()),
        ("batch_id", LongType()),
    ),
)

# Messages that are not valid events: the raw bytes, where they came from, and why.
STREAM_DEAD_LETTERS = Table(
    "stream_dead_letters",
    "batch_id",
    _fields(
        ("topic", StringType()),
        ("partition", IntegerType()),
        ("offset", LongType()),
        ("kafka_timestamp", TimestampType()),
        ("key", BinaryType()),
        ("value", BinaryType()),
        ("reason", StringType()),
        ("batch_id", LongType()),
    ),
)

# The live path's provisional state: the hours the watermark has not closed yet, per brand, and
# minute windows for the shop and its top brands, as of the newest event the open-state query
# has read. A new state after every micro-batch of that query: one partition of each table named
# by its batch id (`version`), renamed into place whole, the hours first; readers take the newest
# version present in both tables and the hours after the last closed one. The closed table
# stays the reference.
LIVE_OPEN_HOURLY_BRAND = Table(
    "live_open_hourly_brand",
    "version",
    _fields(
        ("window_start", TimestampType()),
        ("window_end", TimestampType()),
        ("brand", StringType()),
        *FUNNEL_METRIC_FIELDS,
        ("window_date", DateType()),
        ("as_of", TimestampType()),  # the newest event time in this state
        ("version", LongType()),
    ),
)
SHOP_SCOPE = "shop"  # the live minute windows' scope for the whole shop (else a brand)
LIVE_MINUTE_FUNNEL = Table(
    "live_minute_funnel",
    "version",
    _fields(
        ("window_start", TimestampType()),
        ("window_end", TimestampType()),
        ("scope", StringType()),  # "shop", or a brand among the top brands of the open hours
        ("views", LongType()),
        ("carts", LongType()),
        ("purchases", LongType()),
        ("revenue", REVENUE_TYPE),
        ("view_sessions", LongType()),
        ("purchase_sessions", LongType()),
        ("conversion_rate", DoubleType()),
        ("session_conversion_rate", DoubleType()),
        ("as_of", TimestampType()),
        ("version", LongType()),
    ),
)
LIVE_TABLES = (LIVE_OPEN_HOURLY_BRAND, LIVE_MINUTE_FUNNEL)

STREAM_TABLES = {
    t.name: t for t in (STREAM_EVENTS, STREAM_DEAD_LETTERS, GOLD_STREAM_FUNNEL_HOURLY_BRAND, *LIVE_TABLES)
}
ALL_TABLES = {**BATCH_TABLES, **STREAM_TABLES}

# Streaming checkpoints live under FUNNELPULSE_CHECKPOINTS/<query name>: the ingest query owns
# the Kafka offsets it publishes events to, the gold query its state, the open-state query both.
STREAM_INGEST_QUERY = "stream_ingest"
STREAM_GOLD_QUERY = GOLD_STREAM_FUNNEL_HOURLY_BRAND.name
# the open state's query (its own Kafka offsets and state; its cells files beside, `<name>_cells`)
STREAM_OPEN_QUERY = "live_open_state"
