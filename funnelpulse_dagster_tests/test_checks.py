"""The data-quality checks fail when the data breaks a rule (a check that cannot fail is no check)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from funnelpulse_dagster.checks.quality import (
    GOLD_MATCHES_SILVER,
    SILVER_KNOWN_EVENT_TYPES,
    SILVER_NO_NULL_REQUIRED,
    SILVER_POSITIVE_PRICE,
    SILVER_UNIQUE_KEY,
    daily_totals,
    input_reconciliation,
    silver_quality,
    silver_violation_counts,
    totals_match,
)
from funnelpulse_dagster.tables import SILVER_EVENTS

D1, D2 = date(2019, 10, 1), date(2019, 10, 2)


def _silver_row(**overrides):
    row = {f.name: None for f in SILVER_EVENTS.schema.fields}
    row.update(
        event_time=datetime(2019, 10, 1, 10),
        event_type="view",
        product_id=1,
        category_id=2,
        price=Decimal("4.00"),
        user_id=3,
        user_session="s",
        brand_norm="b",
        price_band="<10",
        is_missing_brand=False,
        is_missing_category=True,
        is_missing_session=False,
        event_date=D1,
    )
    row.update(overrides)
    return tuple(row[f.name] for f in SILVER_EVENTS.schema.fields)


def test_reconciliation_passes_and_fails():
    assert input_reconciliation(10, {D1: 6, D2: 3}, {D1: 1}).passed
    failed = input_reconciliation(10, {D1: 6, D2: 2}, {D1: 1})
    assert not failed.passed and "+1 rows unaccounted for" in failed.description


def test_silver_quality_flags_each_broken_rule(spark):
    rows = [
        _silver_row(),
        _silver_row(),  # duplicate key
        _silver_row(product_id=9, price=Decimal("0.00")),
        _silver_row(product_id=10, event_type="wishlist"),
        _silver_row(product_id=11, event_time=None),
    ]
    frame = spark.createDataFrame(rows, SILVER_EVENTS.schema)
    results = {r.check_name: r for r in silver_quality(silver_violation_counts(frame), frame)}
    assert {name for name, r in results.items() if not r.passed} == {
        SILVER_NO_NULL_REQUIRED,
        SILVER_POSITIVE_PRICE,
        SILVER_KNOWN_EVENT_TYPES,
        SILVER_UNIQUE_KEY,
    }
    assert results[SILVER_UNIQUE_KEY].metadata["duplicate_keys"].value == 1
    assert results[SILVER_POSITIVE_PRICE].metadata["sample"].value  # says which rows

    clean = spark.createDataFrame([_silver_row()], SILVER_EVENTS.schema)
    assert all(r.passed for r in silver_quality(silver_violation_counts(clean), clean))


def test_gold_totals_must_match_to_the_cent(spark):
    silver = spark.createDataFrame(
        [_silver_row(event_type="purchase", price=Decimal("10.01")), _silver_row(product_id=5)],
        SILVER_EVENTS.schema,
    )
    silver_totals = daily_totals(silver, "event_date", from_events=True)
    gold = spark.createDataFrame(
        [(D1, 1, 0, 1, Decimal("10.01"))],
        "window_date date, views long, carts long, purchases long, revenue decimal(18,2)",
    )
    assert totals_match(
        GOLD_MATCHES_SILVER, daily_totals(gold, "window_date", False), silver_totals, "g"
    ).passed
    off_by_a_cent = spark.createDataFrame(
        [(D1, 1, 0, 1, Decimal("10.00"))],
        "window_date date, views long, carts long, purchases long, revenue decimal(18,2)",
    )
    result = totals_match(
        GOLD_MATCHES_SILVER, daily_totals(off_by_a_cent, "window_date", False), silver_totals, "g"
    )
    assert not result.passed
    assert result.metadata["mismatched_days"].value == {
        "2019-10-01": {"revenue": {"gold": "10.00", "silver": "10.01"}}
    }
