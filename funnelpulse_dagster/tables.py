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

# Bronze's own copy of the landing files' records, written once per file and fingerprint: the
# first run that needs a file reads it whole and files each record under its own day, so a later
# run reads only its days' records. Internal to bronze (not an asset); a partition holds one
# file version's records of one day: `<file key>_<fingerprint key>_<own day | undated>`.
BRONZE_LANDING_LINES = Table(
    "bronze_landing_lines",
    "landing_part",
    _fields(
        ("source_file", StringType()),
        ("own_day", DateType()),
        ("line", StringType()),
        ("landing_part", StringType()),
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
        ("bought_sessions", LongType()),  # purchased at all, in any order
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
        ("expected_conversion_rate", DoubleType()),  # the hour's usual purchases / views × the shop's factor
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
        ("source", StringType()),  # one of ANOMALY_SOURCES
        ("window_date", DateType()),
    ),
)
# who judged an anomaly row, most final first: the batch detector over batch gold; the live judge
# over a closed hour of the live table; the live judge over an hour that ended but is still open
# (replaced by the closed hour's verdict, streaming/live_judge.py)
BATCH_SOURCE, STREAM_SOURCE, PROVISIONAL_SOURCE = ANOMALY_SOURCES = ("batch", "stream", "provisional")

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

# Every valid event the stream has read, with its Kafka coordinates and the ingest micro-batch
# that committed it (one Delta commit per batch, which the gold query streams whole), by event
# date. Also an audit trail of what arrived on Kafka.
STREAM_EVENTS = Table(
    "stream_events",
    "event_date",
    _fields(
        *_EVENT_FIELDS,
        ("kafka_partition", IntegerType()),
        ("kafka_offset", LongType()),
        ("kafka_timestamp", TimestampType()),
        ("batch_id", LongType()),
        ("event_date", DateType()),
    ),
)

# Messages that are not valid events: the raw bytes, where they came from, and why, by the
# date Kafka stamped them.
STREAM_DEAD_LETTERS = Table(
    "stream_dead_letters",
    "kafka_date",
    _fields(
        ("topic", StringType()),
        ("partition", IntegerType()),
        ("offset", LongType()),
        ("kafka_timestamp", TimestampType()),
        ("key", BinaryType()),
        ("value", BinaryType()),
        ("reason", StringType()),
        ("batch_id", LongType()),
        ("kafka_date", DateType()),
    ),
)

# The live path's provisional state: the hours the watermark has not closed yet, per brand, and
# minute windows for the shop and its top brands, as of the newest event the open-state query
# has read. A new state after every micro-batch of that query: one partition of each table named
# by its batch id (`version`), each written in one commit with the oldest kept version dropped,
# the hours first; readers take the newest version present in both tables and the hours after
# the last closed one. The closed table
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
# the tables Dagster knows as assets
ALL_TABLES = {**BATCH_TABLES, **STREAM_TABLES}
# every table on the lake: the assets and bronze's landed records
LAKE_TABLES = {**ALL_TABLES, BRONZE_LANDING_LINES.name: BRONZE_LANDING_LINES}

# Streaming checkpoints live under FUNNELPULSE_CHECKPOINTS/<query name>: the ingest query owns
# the Kafka offsets it publishes events to, the gold query its state, the open-state query both.
STREAM_INGEST_QUERY = "stream_ingest"
STREAM_GOLD_QUERY = GOLD_STREAM_FUNNEL_HOURLY_BRAND.name
# the open state's query (its own Kafka offsets and state; its cells files beside, `<name>_cells`)
STREAM_OPEN_QUERY = "live_open_state"


# -- what each column holds, for the catalog (lib/catalog.py) ---------------------------------
# One description per column name where the name means the same in every table; the rates'
# meanings are rules.py's (FUNNEL_RATES, ORDERED_RATES) and the catalog takes them from there.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "event_time": "when the event happened (UTC)",
    "event_type": "view, cart, remove_from_cart or purchase, as exported",
    "product_id": "the product (64-bit id)",
    "category_id": "the product's category (64-bit id; category ids have 19 digits)",
    "category_code": "the category's dotted path as exported, e.g. appliances.environment; NULL when empty",
    "brand": "the product's brand (as exported in bronze, normalised to lower case after); NULL: none",
    "price": "the product's price in the event, exact to the cent (decimal(12,2))",
    "user_id": "the shopper (64-bit id)",
    "user_session": "the shopper's session id; NULL when empty",
    "source_file": "the input file: its absolute path on local disk, its URI (gs://…) elsewhere",
    "event_date": "partition column: the UTC date of event_time",
    "raw_line": "the input line's text, as read",
    "line": "one record of a landing file, as read (header and blank lines are no records)",
    "own_day": "the record's own day by the ownership rule (docs/tables.md); NULL: none, it belongs to the file's anchor day",
    "landing_part": "partition column: <file key>_<fingerprint key>_<own day, or undated>",
    "ingest_date": "partition column: the day the line belongs to by the ownership rule (docs/tables.md)",
    "file_size": "the file's size in bytes when ingested",
    "file_modified_at": "the file's modification time when ingested",
    "file_fingerprint": "size:mtime_µs; a changed file shows a new fingerprint",
    "owned_lines": "the file's records that this day owns",
    "bronze_rows": "of those, the rows read back from bronze_events",
    "quarantine_rows": "of those, the rows read back from bronze_quarantine",
    "ingested_at": "when the run wrote this ledger row",
    "brand_norm": "lower(trim(brand)), empty → NULL",
    "category_code_norm": "lower(trim(category_code)), empty → NULL",
    "category_root": "the first dot-separated segment of the normalised category code; NULL: no category",
    "price_band": "<10, 10-30, 30-60 or 60+ (price in [0,10), [10,30), [30,60), [60,∞))",
    "is_missing_brand": "data-quality flag: the event has no brand",
    "is_missing_category": "data-quality flag: the event has no category code",
    "is_missing_session": "data-quality flag: the event has no session id",
    "window_start": "the UTC window's first instant",
    "window_end": "the UTC window's end (exclusive)",
    "views": "view events",
    "carts": "cart events",
    "remove_from_carts": "remove_from_cart events",
    "purchases": "purchase events",
    "revenue": "sum of price over purchase events, exact (decimal(18,2))",
    "view_sessions": "distinct sessions with at least one view",
    "cart_sessions": "distinct sessions with at least one cart",
    "purchase_sessions": "distinct sessions with at least one purchase",
    "view_users": "distinct users with at least one view",
    "cart_users": "distinct users with at least one cart",
    "purchase_users": "distinct users with at least one purchase",
    "window_date": "partition column: the UTC date of window_start",
    "date": "partition column: the UTC day",
    "anomaly_type": "drop or spike: the direction conversion broke from the brand's history",
    "severity": "low, medium or high, by score (rules.py's thresholds, docs/anomalies.md)",
    "score": "the evidence of the strongest run of hours covering this one (|S_k|)",
    "evidence_hours": "how many hours that run of evidence spans",
    "detectable_at": "the end of the hour whose evidence first made this hour a flag",
    "expected_conversion_rate": "the hour's usual purchases / views from the brand's history, times the shop's factor",
    "expected_purchases": "views × expected_conversion_rate",
    "expected_session_conversion_rate": "the hour's usual purchasing / viewing sessions times the shop's factor (what the detector judges)",
    "expected_purchase_sessions": "view_sessions × expected_session_conversion_rate",
    "z_hour": "the hour's own evidence z (variance-stabilised, over-dispersion corrected)",
    "z_brand": "the seed detector's z against the brand's rate, for comparison",
    "z_brand_hour": "the seed detector's z against the brand's rate at this hour of day, for comparison",
    "is_drop_anomaly": "the seed detector's drop verdict, for comparison",
    "is_spike_anomaly": "the seed detector's spike verdict, for comparison",
    "root_cause_hints": "segments (category root, price band, product) whose purchases moved most against their history, most important first",
    "top_hint": "the first root-cause hint in words",
    "source": "who judged the hour: batch (from batch gold), stream (a closed hour of the live table) "
    "or provisional (an hour that ended but is still open; its closed verdict replaces it)",
    "dimension": "shop, brand, category_root or price_band",
    "viewed_sessions": "sessions with a view of such a product (0 on a row only bought without one)",
    "carted_sessions": "of those, sessions with a cart of such a product at or after that first view",
    "purchased_sessions": "of those, sessions with a purchase of such a product at or after that first cart",
    "bought_sessions": "sessions with a purchase of such a product in any order, with or without a view: "
    "bought_sessions − purchased_sessions bought outside the ordered path",
    "dropped_after_view": "viewed_sessions − carted_sessions",
    "dropped_after_cart": "carted_sessions − purchased_sessions",
    "median_seconds_view_to_cart": "median seconds from first view to cart, over the sessions that carted",
    "p90_seconds_view_to_cart": "90th percentile of the same",
    "median_seconds_cart_to_purchase": "median seconds from cart to purchase, over the sessions that bought",
    "p90_seconds_cart_to_purchase": "90th percentile of the same",
    "median_seconds_view_to_purchase": "median seconds from first view to purchase, over the sessions that bought",
    "p90_seconds_view_to_purchase": "90th percentile of the same",
    "session_date": "partition column: the UTC day of the session's first event",
    "kafka_partition": "the Kafka partition the message came from",
    "kafka_offset": "its offset in that partition",
    "kafka_timestamp": "the message's Kafka timestamp",
    "batch_id": "the ingest query's micro-batch that committed the row",
    "kafka_date": "partition column: the UTC date of kafka_timestamp",
    "topic": "the Kafka topic the message came from",
    "partition": "the Kafka partition the message came from",
    "offset": "its offset in that partition",
    "key": "the message key, raw bytes",
    "reason": "why the row is not a valid event",
    "as_of": "the newest event time included in this state",
    "version": "partition column: the ingest batch id that produced this whole open state; readers take the newest",
    "scope": "shop, or one of the top brands of the open hours",
}
# where a name means something else in one table
TABLE_COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "bronze_quarantine": {"reason": "why the line could not be parsed (docs/tables.md lists the reasons)"},
    "gold_session_funnel_daily": {
        "value": "the brand, category root or price band; NULL for the shop, and for no brand / category"
    },
    "stream_dead_letters": {"value": "the message value, raw bytes"},
    "stream_events": {"event_date": "partition column: the UTC date of event_time"},
}


def column_description(table: Table, column: str) -> str | None:
    """What `column` of `table` holds, or None where only rules.py says (the rates)."""
    return TABLE_COLUMN_DESCRIPTIONS.get(table.name, {}).get(column) or COLUMN_DESCRIPTIONS.get(column)
