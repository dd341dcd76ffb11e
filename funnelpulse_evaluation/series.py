"""Hand-made hourly series for the anomaly detector: three named brands and the rest of the shop
(smaller brands that together outweigh the busiest, as in a real shop) with a daily rhythm and a
fixed conversion rate, optionally with a 90 % purchase drop. Shared by the tests (test_anomalies.py)
and benchmarks/judge_memory.py."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from pyspark.sql import functions as F

FIRST = date(2019, 10, 1)
JUDGED = date(2019, 10, 15)
RATE = 0.12


NAMED = ("big", "steady", "quiet")
REST = tuple(f"rest-{i:02d}" for i in range(1, 13))
PEAK_VIEWS = {"big": 240, "steady": 120, "quiet": 12} | dict.fromkeys(REST, 40)
BRANDS = NAMED + REST


def views_of(brand: str, hour: int) -> int:
    """A daily rhythm: busy evenings, quiet nights."""
    return max(1, round(PEAK_VIEWS[brand] * (0.35 + 0.65 * math.sin(math.pi * hour / 24) ** 2)))


def _phase(brand: str) -> float:
    return len(brand) + (1.7 * int(brand[-2:]) if brand in REST else 0.0)


def purchases_of(brand: str, day: date, hour: int, views: int, rate: float = RATE) -> int:
    # deterministic Poisson-like wobble around the rate, so no hour is exactly on its baseline;
    # each brand has its own phase, so the rest of the shop does not move as one
    wobble = math.sin(day.toordinal() * 7.1 + hour * 3.7 + _phase(brand))
    return max(0, round(views * rate + wobble * math.sqrt(views * rate)))


def series(
    days: int,
    drop: tuple[str, date, range] | None = None,
    weekday_lift: dict[int, float] | None = None,
    holiday: tuple[set[date], float, float] | None = None,
) -> list[tuple]:
    """`weekday_lift`: the whole shop's conversion multiplied on some weekdays (date.weekday());
    `holiday`: (days, traffic, conversion), every brand's views and conversion multiplied on
    those days."""
    rows = []
    holiday_days, traffic, conversion = holiday or (set(), 1.0, 1.0)
    for d in range(days):
        day = FIRST + timedelta(days=d)
        on_holiday = day in holiday_days
        rate = RATE * (weekday_lift or {}).get(day.weekday(), 1.0)
        rate *= conversion if on_holiday else 1.0
        day_traffic = traffic if on_holiday else 1.0
        for hour in range(24):
            for brand in BRANDS:
                views = round(views_of(brand, hour) * day_traffic)
                purchases = purchases_of(brand, day, hour, views, rate)
                if drop and brand == drop[0] and day == drop[1] and hour in drop[2]:
                    purchases = round(views * RATE * 0.1)  # 90 % of purchases gone
                start = datetime(day.year, day.month, day.day, hour)
                # one session per view and per purchase: the series is its own session funnel
                rows.append(
                    (
                        start,
                        start + timedelta(hours=1),
                        brand,
                        views,
                        purchases,
                        purchases / views,
                        views,
                        purchases,
                        day,
                    )
                )
    return rows


def gold_frame(spark, rows):
    schema = (
        "window_start timestamp, window_end timestamp, brand string, views long, purchases long, "
        "conversion_rate double, view_sessions long, purchase_sessions long, window_date date"
    )
    return spark.createDataFrame(rows, schema)


def with_drop(rows: list[tuple], brand: str, hours: set[datetime]) -> list[tuple]:
    """The same series with 90 % of `brand`'s purchases gone in `hours`."""
    changed = []
    for r in rows:
        if r[2] == brand and r[0] in hours:
            purchases = round(r[3] * RATE * 0.1)
            r = (*r[:4], purchases, purchases / r[3], r[6], purchases, r[8])
        changed.append(r)
    return changed


def judgeable(spark, days: int, brand: str, drop_hours: set[datetime]):
    """What `anomaly_rows` judges, from the hand-made series with a drop of `brand` in
    `drop_hours`: hourly gold (with its session rate) and silver events of `brand` (for the
    root-cause hints)."""
    rows = with_drop(series(days), brand, drop_hours)
    gold = gold_frame(spark, rows).withColumn(
        "session_conversion_rate", F.col("purchase_sessions") / F.col("view_sessions")
    )
    events = [
        (row_brand, start, day, kind, "hair", "<10", 1)
        for start, _, row_brand, views, purchases, _, _, _, day in rows
        if row_brand == brand
        for kind, count in (("view", views), ("purchase", purchases))
        for _ in range(count)
    ]
    silver = spark.createDataFrame(
        events,
        "brand_norm string, event_time timestamp, event_date date, event_type string, "
        "category_root string, price_band string, product_id long",
    )
    return gold, silver
