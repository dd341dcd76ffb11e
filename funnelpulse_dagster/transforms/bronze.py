"""Raw export lines → typed bronze rows, or quarantine rows with a reason.

Parsing is done on text lines, not with Spark's CSV reader, so that every input line is seen
exactly once, keeps its raw text for the quarantine, and gets a precise reason when it fails.
Spark 4 runs in ANSI mode, where a plain cast raises on bad text and one garbage line would kill
the job, so every conversion is a `try_*` function whose NULL we turn into a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    BRONZE_QUARANTINE,
    PRICE_TYPE,
    RAW_COLUMNS,
)

HEADER_LINE = ",".join(RAW_COLUMNS)
CSV_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss 'UTC'"
# Kafka producers may send ISO-8601 with a zone designator instead of the export's format.
ISO_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS][.SSS]XXX"
# One CSV field: a quoted field (with "" escapes) or a run of non-commas; used only for lines
# that contain a quote, since the export itself never quotes.
_QUOTED_FIELD_PATTERN = r'(?:^|,)("(?:[^"]|"")*"|[^,]*)'

# internal columns of the parsed frame
REASON = "_reason"
ROW_DATE = "_row_date"
RAW_LINE = "raw_line"
SOURCE_FILE = "source_file"


def parse_event_time(text: Column) -> Column:
    """Timestamp from the export's `YYYY-MM-DD HH:MM:SS UTC`, or ISO-8601; NULL if neither.

    The export's own shape takes a fast path (a cast of the first 19 characters is about twice
    as fast as a pattern parse); anything else goes through the explicit patterns.
    """
    text = F.trim(text)
    export_shape = (F.length(text) == 23) & text.endswith(" UTC") & (F.substring(text, 11, 1) == " ")
    return F.when(export_shape, F.substring(text, 1, 19).try_cast("timestamp")).otherwise(
        F.coalesce(
            F.try_to_timestamp(text, F.lit(CSV_TIME_FORMAT)),
            F.try_to_timestamp(text, F.lit(ISO_TIME_FORMAT)),
        )
    )


def _blank_to_null(text: Column) -> Column:
    return F.when(F.trim(text) == "", None).otherwise(text)


def _split_fields(line: Column) -> Column:
    """The line's fields as an array; quoted fields only take the slow path when quotes occur."""
    quoted = F.transform(
        F.regexp_extract_all(line, F.lit(_QUOTED_FIELD_PATTERN), 1),
        lambda f: F.when(
            f.startswith('"'), F.regexp_replace(F.substring(f, F.lit(2), F.length(f) - 2), '""', '"')
        ).otherwise(f),
    )
    return F.when(line.contains('"'), quoted).otherwise(F.split(line, ",", -1))


def drop_non_records(lines: DataFrame) -> DataFrame:
    """Remove blank lines and repeated header lines: they are not input rows."""
    value = F.trim(F.col("value"))
    return lines.filter((value != "") & (value != HEADER_LINE))


def normalise_file_uri(uri: str) -> str:
    """One spelling per local file: Hadoop says `file:/x`, Spark's metadata `file:///x`."""
    return re.sub(r"^file:/+", "/", uri)


def _normalised_file_column(col: Column) -> Column:
    return F.regexp_replace(col, r"^file:/+", "/")


def typed_event_columns(fields: Column) -> list[Column]:
    """The nine raw fields (an array of strings in RAW_COLUMNS order) as typed bronze columns,
    plus `_event_time_text` and `_bad_*` flags for `conversion_reason()`.

    One implementation for CSV lines and Kafka messages: both end as the same array of texts.
    """

    def text(i: int) -> Column:
        return _blank_to_null(F.get(fields, i))

    def typed(i: int, type_name: str) -> Column:
        return F.trim(F.get(fields, i)).try_cast(type_name)

    def bad(i: int, name: str, type_name: str) -> Column:
        return (text(i).isNotNull() & typed(i, type_name).isNull()).alias(f"_bad_{name}")

    price_type = PRICE_TYPE.simpleString()
    return [
        parse_event_time(F.get(fields, 0)).alias("event_time"),
        text(0).alias("_event_time_text"),
        F.trim(text(1)).alias("event_type"),
        typed(2, "bigint").alias("product_id"),
        bad(2, "product_id", "bigint"),
        typed(3, "bigint").alias("category_id"),
        bad(3, "category_id", "bigint"),
        text(4).alias("category_code"),
        text(5).alias("brand"),
        typed(6, price_type).alias("price"),
        bad(6, "price", price_type),
        typed(7, "bigint").alias("user_id"),
        bad(7, "user_id", "bigint"),
        text(8).alias("user_session"),
    ]


def conversion_reason() -> Column:
    """Why the typed columns of `typed_event_columns` are unusable, NULL when they are fine."""
    return (
        F.when(F.col("_event_time_text").isNull(), F.lit("missing event_time"))
        .when(F.col("event_time").isNull(), F.lit("unparseable event_time"))
        .when(F.col("_bad_product_id"), F.lit("non-integer product_id"))
        .when(F.col("_bad_category_id"), F.lit("non-integer category_id"))
        .when(F.col("_bad_price"), F.lit("non-numeric price"))
        .when(F.col("_bad_user_id"), F.lit("non-integer user_id"))
    )


def parse_raw_lines(
    lines: DataFrame, file_first_dates: Mapping[str, date] | None = None, default_date: date | None = None
) -> DataFrame:
    """Parse `value` (one raw line) and `source_file` into the bronze columns plus `_reason`.

    `_reason` is NULL for a row that belongs in bronze and says what is wrong otherwise.
    `_row_date` is the day that owns the row: its event date, else the date its text starts
    with, else the date of the first dated line of its file (`file_first_dates`), so that every
    line, garbage included, belongs to exactly one daily partition. A file without a single
    dated line gives its lines to `default_date` (the first partition).
    """
    n = len(RAW_COLUMNS)
    parsed = lines.withColumn("_fields", _split_fields(F.col("value"))).select(
        F.col("value").alias(RAW_LINE),
        F.col(SOURCE_FILE),
        F.size("_fields").alias("_field_count"),
        *typed_event_columns(F.col("_fields")),
    )
    reason = F.when(
        F.col("_field_count") != n,
        F.concat(F.lit(f"expected {n} fields, found "), F.col("_field_count").cast("string")),
    ).otherwise(conversion_reason())
    first_dates = {normalise_file_uri(k): v for k, v in (file_first_dates or {}).items() if v is not None}
    file_date = (
        F.create_map(*[x for k, v in first_dates.items() for x in (F.lit(k), F.lit(v))])[
            _normalised_file_column(F.col(SOURCE_FILE))
        ]
        if first_dates
        else F.lit(None).cast("date")
    )
    fallback_date = F.lit(default_date) if default_date is not None else F.lit(None).cast("date")
    prefix_date = F.try_to_date(F.substring(F.col(RAW_LINE), 1, 10), "yyyy-MM-dd")
    return parsed.withColumn(REASON, reason).select(
        # the raw text is only needed where the line goes to quarantine
        *[
            F.when(F.col(REASON).isNotNull(), F.col(c)).alias(c) if c == RAW_LINE else c
            for c in parsed.columns
            if not c.startswith("_")
        ],
        F.col(REASON),
        F.coalesce(F.to_date("event_time"), prefix_date, file_date, fallback_date).alias(ROW_DATE),
    )


def restrict_to_dates(parsed: DataFrame, dates: Iterable[date]) -> DataFrame:
    """Keep the rows owned by the given days (a run materializes exactly its partitions)."""
    return parsed.filter(F.col(ROW_DATE).isin(sorted(set(dates))))


def prefilter_lines_for_dates(lines: DataFrame, dates: Iterable[date]) -> DataFrame:
    """Cheap pre-filter before parsing: drop lines that start with a date far from the range.

    A line is kept when its first ten characters are not a valid date (it may be garbage that
    the owner rule gives to one of our days) or are a date within a day of the range (a timestamp
    with a zone offset can fall on a neighbouring UTC day). The exact owner test runs after
    parsing. ISO dates compare as strings, so the common case costs a string comparison; only
    lines outside the window pay for a date parse.
    """
    wanted = sorted(set(dates))
    lo = (wanted[0] - timedelta(days=1)).isoformat()
    hi = (wanted[-1] + timedelta(days=1)).isoformat()
    prefix = F.substring(F.col("value"), 1, 10)
    return lines.filter(
        F.when(prefix.between(lo, hi), True).otherwise(F.try_to_date(prefix, "yyyy-MM-dd").isNull())
    )


INPUT_ROWS = "input_rows"


def reason_kind(reason: str) -> str:
    """A reason without its particulars: "expected 9 fields, found 3" → "wrong field count"."""
    return "wrong field count" if reason.startswith("expected ") else reason


QUARANTINED_ROWS = "quarantined_rows"


def _quarantine_columns() -> list[Column]:
    return [
        F.col(SOURCE_FILE),
        F.col(RAW_LINE),
        F.col(REASON).alias("reason"),
        F.col(ROW_DATE).alias(BRONZE_QUARANTINE.partition_column),
    ]


def collect_quarantined() -> Column:
    """The quarantine rows themselves, for `DataFrame.observe`: they travel with the bronze
    write's metrics, so one pass over the input writes both tables. Their memory on the driver
    is the size of the bad lines' text (a handful per file in practice)."""
    return F.collect_list(F.when(F.col(REASON).isNotNull(), F.struct(*_quarantine_columns()))).alias(
        QUARANTINED_ROWS
    )


def bronze_rows(parsed: DataFrame) -> DataFrame:
    return parsed.filter(F.col(REASON).isNull()).select(
        *BRONZE_EVENTS.data_columns, F.col(ROW_DATE).alias(BRONZE_EVENTS.partition_column)
    )


def quarantine_rows(parsed: DataFrame) -> DataFrame:
    """The quarantine rows as a frame (the asset collects the same columns via observe())."""
    return parsed.filter(F.col(REASON).isNotNull()).select(*_quarantine_columns())


def first_date_in_text(head: bytes) -> date | None:
    """The date of the first line in `head` that starts with one (the file's first dated line)."""
    for raw in head.decode("utf-8", errors="replace").splitlines():
        try:
            return date.fromisoformat(raw[:10])
        except ValueError:
            continue
    return None
