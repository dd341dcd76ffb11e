"""Raw export lines → typed bronze rows, or quarantine rows with a reason.

Parsing is done on text lines, not with Spark's CSV reader, so that every input line is seen
exactly once, keeps its raw text for the quarantine, and gets a precise reason when it fails.
Spark 4 runs in ANSI mode, where a plain cast raises on bad text and one garbage line would kill
the job, so every conversion is a `try_*` function whose NULL we turn into a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse.ownership import BOM, HEADER_LINE, STANDARD_LAYOUT, ExportLayout
from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    BRONZE_QUARANTINE,
    PRICE_TYPE,
)

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
OWN_DAY = "own_day"


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


def export_lines(session: SparkSession, uri: str) -> DataFrame:
    """A file's lines as `value`, a leading byte-order mark removed (`*.gz` files are
    decompressed by Spark's reader)."""
    value = F.col("value")
    return session.read.text(uri).select(
        F.when(value.startswith(BOM), F.substr(value, F.lit(2))).otherwise(value).alias("value")
    )


def drop_non_records(lines: DataFrame, layout: ExportLayout = STANDARD_LAYOUT) -> DataFrame:
    """Remove blank lines and header lines (the export's or the file's own): they are not rows."""
    value = F.trim(F.col("value"))
    keep = (value != "") & (value != HEADER_LINE)
    if layout.header and layout.header != HEADER_LINE:
        keep = keep & (value != layout.header)
    return lines.filter(keep)


def _ordered_fields(line: Column, layout: ExportLayout) -> Column:
    """The nine raw fields in RAW_COLUMNS order, whatever order the file's header gave them."""
    fields = _split_fields(line)
    if layout.standard:
        return fields
    return F.array(*[F.get(fields, F.lit(p)) for p in layout.positions])


def _event_time_text(line: Column, layout: ExportLayout) -> Column:
    if layout.standard:  # the common case, without building the field array
        return F.when(line.contains('"'), F.get(_split_fields(line), 0)).otherwise(
            F.substring_index(line, ",", 1)
        )
    return F.get(_split_fields(line), F.lit(layout.positions[0]))


def own_day(event_time: Column, line: Column) -> Column:
    """A line's own day (funnelpulse_dagster.lakehouse.ownership): the UTC date of its event_time, else
    the date its text starts with, else NULL."""
    return F.coalesce(F.to_date(event_time), F.try_to_date(F.substring(line, 1, 10), "yyyy-MM-dd"))


def landing_records(lines: DataFrame, layout: ExportLayout = STANDARD_LAYOUT) -> DataFrame:
    """A file's records (`value`) with their own day (`own_day`, NULL: none) by the ownership
    rule (funnelpulse_dagster.lakehouse.ownership). Blank and header lines are no records and are
    dropped.

    A line in the export's own shape (`YYYY-MM-DD HH:MM:SS UTC,` at its start, in the standard
    layout) owns the date it starts with whether or not its clock time parses, so such lines
    take their first ten characters and only the few others have their time parsed (NULL when
    the text is no real date, as the rule says).
    """
    line = F.col("value")
    day = own_day(parse_event_time(_event_time_text(line, layout)), line)
    if layout.standard:
        export_shape = (F.substring(line, 11, 1) == " ") & (F.substring(line, 20, 5) == " UTC,")
        day = F.when(export_shape, F.try_to_date(F.substring(line, 1, 10), "yyyy-MM-dd")).otherwise(day)
    return lines.transform(drop_non_records, layout).withColumn(OWN_DAY, day)


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


def parse_landed_records(
    records: DataFrame, anchors: Mapping[str, date], layout: ExportLayout = STANDARD_LAYOUT
) -> DataFrame:
    """Parse landed records (`source_file`, `own_day`, `line`: BRONZE_LANDING_LINES) into the
    bronze columns plus `_reason` and `_row_date`.

    `_reason` is NULL for a row that belongs in bronze and says what is wrong otherwise.
    `_row_date` is the day that owns the row: its own day, else its file's anchor day (`anchors`
    maps each `source_file` to it; funnelpulse_dagster.lakehouse.ownership), so every record
    belongs to exactly one day.
    """
    n = layout.field_count
    anchor_of = F.create_map(
        *[x for uri, anchor in anchors.items() for x in (F.lit(uri), F.lit(anchor).cast("date"))]
    )
    parsed = records.withColumn("_fields", _ordered_fields(F.col("line"), layout)).select(
        F.col("line").alias(RAW_LINE),
        F.col(SOURCE_FILE),
        F.coalesce(F.col(OWN_DAY), anchor_of[F.col(SOURCE_FILE)]).alias(ROW_DATE),
        F.size(_split_fields(F.col("line")) if not layout.standard else "_fields").alias("_field_count"),
        *typed_event_columns(F.col("_fields")),
    )
    reason = F.when(
        F.col("_field_count") != n,
        F.concat(F.lit(f"expected {n} fields, found "), F.col("_field_count").cast("string")),
    ).otherwise(conversion_reason())
    return parsed.withColumn(REASON, reason).select(
        # the raw text is only needed where the line goes to quarantine
        *[
            F.when(F.col(REASON).isNotNull(), F.col(c)).alias(c) if c == RAW_LINE else c
            for c in parsed.columns
            if not c.startswith("_")
        ],
        F.col(REASON),
        F.col(ROW_DATE),
    )


def owned_by(dates: Iterable[date]) -> Column:
    """The row belongs to one of `dates` (a run materializes exactly its partitions).

    Use it above something that materializes the parsed columns, as the bronze asset's
    `observe()` does: a filter directly over the parse is pushed into the parse's projection by
    Spark's optimizer, which then parses every line's time twice, once for the filter and once
    for the output (the bronze phase `parse_and_write_bronze` in `benchmarks/batch.py` shows it).
    """
    return F.col(ROW_DATE).isin(sorted(set(dates)))


def reason_kind(reason: str) -> str:
    """A reason without its particulars: "expected 9 fields, found 3" → "wrong field count"."""
    return "wrong field count" if reason.startswith("expected ") else reason


QUARANTINED_ROWS = "quarantined_rows"
LINES_PARSED = "lines_parsed"


def _quarantine_columns() -> list[Column]:
    return [
        F.col(SOURCE_FILE),
        F.col(RAW_LINE),
        F.col(REASON).alias("reason"),
        F.col(ROW_DATE).alias(BRONZE_QUARANTINE.partition_column),
    ]


def _quarantined(dates: Iterable[date]) -> Column:
    """The parsed row goes to the quarantine of one of `dates`."""
    return F.col(REASON).isNotNull() & owned_by(dates)


def collect_quarantined(dates: Iterable[date]) -> Column:
    """The quarantine rows of `dates` themselves, for `DataFrame.observe`: they travel with the
    bronze write's metrics, so one pass over the input writes both tables. Their memory on the
    driver is the size of the bad lines' text (a handful per file in practice)."""
    return F.collect_list(F.when(_quarantined(dates), F.struct(*_quarantine_columns()))).alias(
        QUARANTINED_ROWS
    )


def bronze_rows(parsed: DataFrame, dates: Iterable[date]) -> DataFrame:
    """The parsed rows of `dates` that belong in bronze."""
    return parsed.filter(F.col(REASON).isNull() & owned_by(dates)).select(
        *BRONZE_EVENTS.data_columns, F.col(ROW_DATE).alias(BRONZE_EVENTS.partition_column)
    )


def quarantine_rows(parsed: DataFrame, dates: Iterable[date]) -> DataFrame:
    """The quarantine rows of `dates` as a frame (the asset collects the same columns via
    observe())."""
    return parsed.filter(_quarantined(dates)).select(*_quarantine_columns())
