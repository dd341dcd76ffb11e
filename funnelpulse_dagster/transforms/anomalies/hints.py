"""Root-cause hints: which segment of a flagged brand-hour lost (or gained) the purchases, and
the anomaly table's rows (flags joined with their hints)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import (
    HINT_DIMENSIONS,
    HINT_PRIOR_VIEWS,
    HINTS_PER_DIMENSION,
    LOOKBACK_DAYS,
)
from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND
from funnelpulse_dagster.transforms.anomalies.baselines import shrunk
from funnelpulse_dagster.transforms.anomalies.evidence import detect
from funnelpulse_dagster.transforms.anomalies.plan import computed


def root_cause_hints(flags: DataFrame, silver: DataFrame) -> DataFrame:
    """For each flagged brand-hour, the segments (category root, price band, product) whose
    purchases moved most against the brand's history in that segment: contribution =
    observed − views × the segment's baseline rate (shrunk to the brand's rate). Segments are
    ranked, in the anomaly's direction, by how much their contribution exceeds their share of
    the hour's views times the dimension's whole gap; `HINTS_PER_DIMENSION` per dimension, most
    important first.

    `silver` must hold the flagged days and their LOOKBACK_DAYS of history. The events it reads
    three times are computed once (see `computed`); the hints themselves are not, as
    `anomaly_rows` computes them in its own result."""
    keys = flags.select("brand", "window_start", "window_date", "anomaly_type").distinct()
    brands = keys.select("brand").distinct()
    # the flagged brands' events over the look-back: small, and read by three dimensions
    events = (
        silver.select(
            F.col("brand_norm").alias("brand"),
            F.date_trunc("hour", "event_time").alias("window_start"),
            "event_date",
            "event_type",
            *[F.coalesce(F.col(d).cast("string"), F.lit("unknown")).alias(d) for d in HINT_DIMENSIONS],
        )
        .join(F.broadcast(brands), "brand")
        .withColumn("is_view", (F.col("event_type") == "view").cast("long"))
        .withColumn("is_purchase", (F.col("event_type") == "purchase").cast("long"))
        .transform(computed)
    )
    judged_days = keys.select("brand", F.col("window_date").alias("judged_date")).distinct()
    past = (
        events.join(judged_days, "brand")
        .filter(
            (F.col("event_date") < F.col("judged_date"))
            & (F.col("event_date") >= F.date_sub(F.col("judged_date"), LOOKBACK_DAYS))
        )
        .transform(computed)
    )
    brand_rate = past.groupBy("brand", "judged_date").agg(
        (F.sum("is_purchase") / F.greatest(F.sum("is_view"), F.lit(1))).alias("p_brand")
    )
    hour_window = Window.partitionBy("brand", "window_start")
    hints = []
    for dim in HINT_DIMENSIONS:
        hour = (
            events.join(
                keys.select("brand", "window_start", "anomaly_type", "window_date"), ["brand", "window_start"]
            )
            .groupBy("brand", "window_start", "window_date", "anomaly_type", F.col(dim).alias("segment"))
            .agg(F.sum("is_view").alias("views"), F.sum("is_purchase").alias("purchases"))
        )
        segment_rate = (
            past.groupBy("brand", "judged_date", F.col(dim).alias("segment"))
            .agg(F.sum("is_purchase").alias("P"), F.sum("is_view").alias("V"))
            .join(brand_rate, ["brand", "judged_date"])
            .withColumn("p_segment", shrunk(F.col("P"), F.col("V"), F.col("p_brand"), HINT_PRIOR_VIEWS))
            .select("brand", F.col("judged_date").alias("window_date"), "segment", "p_segment")
        )
        with_base = (
            hour.join(segment_rate, ["brand", "window_date", "segment"], "left")
            .join(
                brand_rate.withColumnRenamed("judged_date", "window_date"), ["brand", "window_date"], "left"
            )
            .withColumn("expected_purchases", F.col("views") * F.coalesce("p_segment", "p_brand", F.lit(0.0)))
            .withColumn("contribution", F.col("purchases") - F.col("expected_purchases"))
            # what the segment adds beyond its fair share of the hour's gap: a segment holding
            # every view (one price band for the whole brand) explains nothing by itself
            .withColumn(
                "_excess",
                F.col("contribution")
                - F.col("views")
                / F.greatest(F.sum("views").over(hour_window), F.lit(1))
                * F.sum("contribution").over(hour_window),
            )
            .withColumn(
                "_direction",
                F.when(F.col("anomaly_type") == "drop", -F.col("_excess")).otherwise(F.col("_excess")),
            )
        )
        ranked = with_base.withColumn(
            "_rank",
            F.row_number().over(
                Window.partitionBy("brand", "window_start").orderBy(F.desc("_direction"), F.asc("segment"))
            ),
        ).filter(F.col("_rank") <= HINTS_PER_DIMENSION)
        hints.append(
            ranked.select(
                "brand",
                "window_start",
                F.struct(
                    F.lit(dim).alias("dimension"),
                    F.col("segment").alias("value"),
                    F.col("views").cast("long").alias("views"),
                    F.col("purchases").cast("long").alias("purchases"),
                    F.round("expected_purchases", 2).alias("expected_purchases"),
                    F.round("contribution", 2).alias("contribution"),
                    F.col("_direction").alias("_weight"),
                ).alias("hint"),
            )
        )
    union = hints[0]
    for more in hints[1:]:
        union = union.unionByName(more)
    collected = union.groupBy("brand", "window_start").agg(
        F.sort_array(
            F.collect_list(F.struct(F.col("hint._weight").alias("w"), F.col("hint").alias("h"))), asc=False
        ).alias("_sorted")
    )
    return collected.select(
        "brand",
        "window_start",
        F.transform("_sorted", lambda e: e["h"].dropFields("_weight")).alias("root_cause_hints"),
    )


def describe_hint(hints: Column) -> Column:
    """'category_root=unknown: 3 purchases vs 11.2 expected' for the most important hint."""
    top = F.get(hints, 0)
    return F.when(
        top.isNotNull(),
        F.format_string(
            "%s=%s: %d purchases vs %.1f expected",
            top["dimension"],
            top["value"],
            top["purchases"],
            top["expected_purchases"],
        ),
    )


def anomaly_rows(gold: DataFrame, silver: DataFrame, judged_days: list, source: str) -> DataFrame:
    """gold_anomalies_hourly_brand rows for `judged_days`: the detector's flags with their
    root-cause hints, the top hint in words, and where the judged numbers came from.

    Returned already computed, with its lineage cut (see `computed`)."""
    flags = computed(detect(gold, judged_days))
    hints = root_cause_hints(flags, silver)
    rows = (
        flags.join(hints, ["brand", "window_start"], "left")
        .withColumn("top_hint", describe_hint(F.col("root_cause_hints")))
        .withColumn("source", F.lit(source))
        .select(*GOLD_ANOMALIES_HOURLY_BRAND.schema.fieldNames())
    )
    return computed(rows)
