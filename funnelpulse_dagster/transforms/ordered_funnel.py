"""The ordered session funnel: view → cart → purchase in event-time order within a session.

Per session and per dimension value (the shop; the brand, category root or price band of the
event's product), a session
- *viewed* when it has a view of such a product (t_view: the first one);
- *carted* when it has a cart of such a product at or after t_view (t_cart: the first one);
- *purchased* when it has a purchase of such a product at or after t_cart (t_purchase),
each within the conversion window after t_view when one is set (default: the session itself);
- *bought* when it has a purchase of such a product at all, in any order (t_bought): a session
  that bought without viewing the value in it has a row for it, outside the ordered path.
A step is attributed to a brand only through that brand's own products: a session that views
brand A and buys brand B converts for neither brand (it does for the shop). Events with the same
timestamp count as in order (the export has one-second resolution, so a view and a cart in the
same second are taken as view, then cart). A session counts on the UTC day of its first event,
so one that spans midnight counts once, on the day it started.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import ORDERED_RATES
from funnelpulse_dagster.tables import GOLD_SESSION_FUNNEL_DAILY, ORDERED_DIMENSIONS, SHOP_DIMENSION
from funnelpulse_dagster.transforms.gold import add_funnel_rates

# the silver column holding each dimension's value (the shop has one value: NULL)
_VALUE_COLUMNS = {
    SHOP_DIMENSION: None,
    "brand": "brand_norm",
    "category_root": "category_root",
    "price_band": "price_band",
}


def _dimension_values() -> Column:
    """The event's value in each dimension; the dimension as its index in ORDERED_DIMENSIONS (a
    byte sorts faster than its name)."""
    return F.array(
        *[
            F.struct(
                F.lit(i).cast("byte").alias("dimension_index"),
                (F.col(column) if column else F.lit(None).cast("string")).alias("value"),
            )
            for i, column in enumerate(_VALUE_COLUMNS[d] for d in ORDERED_DIMENSIONS)
        ]
    )


def session_steps(silver: DataFrame, window_minutes: int | None = None) -> DataFrame:
    """One row per session × dimension value it viewed or bought: session_date, t_view, t_cart,
    t_purchase, t_bought.

    Sessions are grouped by a 64-bit hash of their id first and the id itself second: both
    window sorts then compare a long on almost every comparison instead of a 36-character
    string (one shuffle, by session, still serves both windows).

    A session that neither viewed nor bought anything has no row in any dimension, so it is
    dropped before its events are multiplied by the dimensions. The rows per
    session × value then come out of the second window already sorted by their group, so with
    `spark.sql.execution.replaceHashWithSortAgg` (runtime/spark_session.py) the aggregation that keeps
    one row per group streams through them instead of hashing a 36-character id per row
    (`benchmarks/batch.py` measures the asset; docs/performance.md).
    """
    session_key = [F.xxhash64("user_session").alias("session_hash"), "user_session"]
    whole_session = Window.partitionBy("session_hash", "user_session")
    sessions = (
        silver.filter(F.col("user_session").isNotNull())
        .select(*session_key, "event_time", "event_type", "brand_norm", "category_root", "price_band")
        # one window operator for both: they share the partitioning
        .select(
            "*",
            F.to_date(F.min("event_time").over(whole_session)).alias("session_date"),
            F.max(F.col("event_type") == "view").over(whole_session).alias("session_viewed"),
            F.max(F.col("event_type") == "purchase").over(whole_session).alias("session_bought"),
        )
    )
    events = (
        # a session's first event of any type dates it; after that only the steps matter
        sessions.filter(
            (F.col("session_viewed") | F.col("session_bought"))
            & F.col("event_type").isin("view", "cart", "purchase")
        )
        .select(
            "session_hash",
            "user_session",
            "session_date",
            "event_time",
            "event_type",
            F.explode(_dimension_values()).alias("d"),
        )
        .select("session_hash", "user_session", "session_date", "event_time", "event_type", "d.*")
    )
    # the window's sort order is the aggregation's key order below (session_date is the same
    # for the whole session, so it splits no group)
    group_key = ["session_hash", "dimension_index", "value", "user_session", "session_date"]
    group = Window.partitionBy(*group_key)

    def within(start: str) -> Column:
        if window_minutes is None:
            return F.lit(True)
        return F.col("event_time") <= F.col(start) + F.make_interval(mins=F.lit(window_minutes))

    step = lambda kind, after: (F.col("event_type") == kind) & (F.col("event_time") >= F.col(after))
    # t_view and t_cart are needed on every row (each step is measured from the one before), so
    # they are window minima; t_purchase is only needed once per group, so it is a minimum of
    # the aggregation that keeps one row per group anyway (one window pass fewer over the
    # exploded events)
    stepped = events.withColumn(
        "t_view", F.min(F.when(F.col("event_type") == "view", F.col("event_time"))).over(group)
    ).withColumn(
        "t_cart",
        F.min(F.when(step("cart", "t_view") & within("t_view"), F.col("event_time"))).over(group),
    )
    dimension = F.element_at(F.array(*[F.lit(d) for d in ORDERED_DIMENSIONS]), F.col("dimension_index") + 1)
    bought = F.min(F.when(F.col("event_type") == "purchase", F.col("event_time")))
    return (
        stepped.filter(F.col("t_view").isNotNull() | (F.col("event_type") == "purchase"))
        .groupBy(*group_key)
        .agg(
            F.first("t_view").alias("t_view"),
            F.first("t_cart").alias("t_cart"),
            F.min(F.when(step("purchase", "t_cart") & within("t_view"), F.col("event_time"))).alias(
                "t_purchase"
            ),
            bought.alias("t_bought"),
        )
        .select(
            "user_session",
            "session_date",
            dimension.alias("dimension"),
            "value",
            "t_view",
            "t_cart",
            "t_purchase",
            "t_bought",
        )
    )


def _seconds(end: str, start: str) -> Column:
    return (F.unix_micros(F.col(end)) - F.unix_micros(F.col(start))) / 1e6


# the quantiles reported for each time to convert, by column prefix
_QUANTILES = {"median": 0.5, "p90": 0.9}


def ordered_funnel(steps: DataFrame) -> DataFrame:
    """gold_session_funnel_daily from `session_steps`: counts, drop-offs, step rates and time to
    convert (exact median and 90th percentile, in seconds, over the sessions that made the step).

    Each time to convert takes one exact `percentile` with both quantiles: one collection of
    its values per group instead of one per quantile.
    """
    times = {
        "view_to_cart": _seconds("t_cart", "t_view"),
        "cart_to_purchase": _seconds("t_purchase", "t_cart"),
        "view_to_purchase": _seconds("t_purchase", "t_view"),
    }
    counted = steps.groupBy("session_date", "dimension", "value").agg(
        F.count("t_view").alias("viewed_sessions"),
        F.count("t_cart").alias("carted_sessions"),
        F.count("t_purchase").alias("purchased_sessions"),
        F.count("t_bought").alias("bought_sessions"),
        *[F.percentile(seconds, list(_QUANTILES.values())).alias(name) for name, seconds in times.items()],
    )
    counted = counted.select(
        "*",
        *[
            F.col(name)[i].alias(f"{prefix}_seconds_{name}")
            for name in times
            for i, prefix in enumerate(_QUANTILES)
        ],
    )
    return (
        counted.withColumn("dropped_after_view", F.col("viewed_sessions") - F.col("carted_sessions"))
        .withColumn("dropped_after_cart", F.col("carted_sessions") - F.col("purchased_sessions"))
        .transform(lambda metrics: add_funnel_rates(metrics, ORDERED_RATES))
        .withColumn("viewed_sessions", F.col("viewed_sessions").cast("long"))
        .withColumn("carted_sessions", F.col("carted_sessions").cast("long"))
        .withColumn("purchased_sessions", F.col("purchased_sessions").cast("long"))
        .withColumn("bought_sessions", F.col("bought_sessions").cast("long"))
        .select(*GOLD_SESSION_FUNNEL_DAILY.schema.fieldNames())
    )
