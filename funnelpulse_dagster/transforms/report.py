"""The funnel report's Spark side: the figures it needs from silver and gold (plotting and HTML
are in reports/funnel_report.py)."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import FUNNEL_STEPS
from funnelpulse_dagster.transforms.anomalies import evidence_for_days, with_baseline_band


def session_funnel(silver: DataFrame) -> dict[str, int]:
    """Distinct sessions with at least one view, cart and purchase."""
    row = silver.agg(
        *[
            F.countDistinct(F.when(F.col("event_type") == s, F.col("user_session"))).alias(s)
            for s in FUNNEL_STEPS
        ]
    ).first()
    return {s: int(row[s] or 0) for s in FUNNEL_STEPS}


def deep_dive_hours(gold: DataFrame, brand: str, days: list[date]):
    """The brand's hours in `days` with the detector's baseline and band, as pandas. The whole
    gold goes into the baselines (the global prior is every brand's), then one brand is kept."""
    evidence = with_baseline_band(evidence_for_days(gold, days))
    return (
        evidence.filter((F.col("brand") == brand) & F.col("window_date").between(min(days), max(days)))
        .select(
            F.date_format("window_start", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("window_start"),
            "session_conversion_rate",
            "expected_session_conversion_rate",
            "band_low",
            "band_high",
        )
        .orderBy("window_start")
        .toPandas()
    )
