"""Bronze events → clean, normalised, de-duplicated silver events.

The rules themselves are stated in rules.py; these functions apply them, and the batch asset and
the streaming job both import them, so the two paths cannot drift apart.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import SILVER_KEY_RULE, violated_rule
from funnelpulse_dagster.tables import RAW_COLUMNS, SILVER_EVENTS


def _normalise_text(col: Column) -> Column:
    trimmed = F.lower(F.trim(col))
    return F.when(trimmed == "", None).otherwise(trimmed)


def price_band(price: Column) -> Column:
    """[0,10) → '<10', [10,30) → '10-30', [30,60) → '30-60', [60,∞) → '60+'."""
    return (
        F.when(price < 10, F.lit("<10"))
        .when(price < 30, F.lit("10-30"))
        .when(price < 60, F.lit("30-60"))
        .otherwise(F.lit("60+"))
    )


def apply_silver_rules(events: DataFrame) -> DataFrame:
    """Keep the rows that pass every silver rule."""
    return events.filter(violated_rule().isNull())


def normalise_events(events: DataFrame) -> DataFrame:
    """Add normalised brand / category, category root, price band and data-quality flags."""
    category_code_norm = _normalise_text(F.col("category_code"))
    brand_norm = _normalise_text(F.col("brand"))
    return (
        events.withColumn("brand_norm", brand_norm)
        .withColumn("category_code_norm", category_code_norm)
        # first dot-separated segment; NULL (not '') where there is no category
        .withColumn(
            "category_root",
            F.when(F.col("category_code_norm").isNull(), None).otherwise(
                F.split_part(F.col("category_code_norm"), F.lit("."), F.lit(1))
            ),
        )
        .withColumn("price_band", price_band(F.col("price")))
        .withColumn("is_missing_brand", F.col("brand_norm").isNull())
        .withColumn("is_missing_category", F.col("category_code_norm").isNull())
        .withColumn("is_missing_session", F.col("user_session").isNull() | (F.trim("user_session") == ""))
    )


def deduplicate_events(events: DataFrame, one_task_per_day: bool = True) -> DataFrame:
    """One row per event key (rules.SILVER_KEY_RULE), chosen deterministically.

    Duplicates in the export are usually identical rows; where the non-key columns differ, the
    smallest of them wins, so re-running a day always keeps the same row. `event_date` joins the
    grouping key (it is a function of `event_time`) so the output keeps the day column.
    """
    key = ["event_date", *SILVER_KEY_RULE.key]
    rest = [c for c in events.columns if c not in key]
    # Shuffling first lets Spark aggregate with one sort after the exchange; grouping directly
    # plans a sort-based partial aggregate on each side of it, twice the sorting (min() of a
    # struct with strings cannot use the hash aggregate). On a laptop the shuffle is by the day
    # alone, which the key contains, so each day's rows meet on one task: the write
    # then makes one file per day instead of one per day and task, and every reader of silver
    # opens one file a day instead of one per day and task (`benchmarks/batch.py` measures both
    # the write and the gold tables read from it). The cost: one task holds a whole day, so the
    # cluster profile (runtime/profiles.py) shuffles by the whole key instead.
    return (
        events.repartition(*(["event_date"] if one_task_per_day else key))
        .groupBy(*key)
        .agg(F.min(F.struct(*rest)).alias("_row"))
        .select(*key, "_row.*")
    )


def to_silver(bronze: DataFrame, one_task_per_day: bool = True) -> DataFrame:
    """The whole silver transform: rules, de-duplication, normalisation, silver column order.

    De-duplication runs before normalisation and on the raw event columns only: the derived
    columns are functions of those, and a narrower row makes the sort-based aggregate cheaper.
    """
    return (
        bronze.transform(apply_silver_rules)
        .select(*RAW_COLUMNS, F.to_date("event_time").alias("event_date"))
        .transform(deduplicate_events, one_task_per_day)
        .transform(normalise_events)
        .select(*SILVER_EVENTS.schema.fieldNames())
    )


def silver_rule_counts(bronze: DataFrame) -> DataFrame:
    """Rows removed per rule, and rows kept (`passed`): one row per day (`event_date`) and rule."""
    return bronze.groupBy("event_date", F.coalesce(violated_rule(), F.lit("passed")).alias("rule")).count()
