"""The data-quality checks fail when the data breaks a rule (a check that cannot fail is no check)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from funnelpulse_dagster.lakehouse.ingest import settled_rows_by_file_day
from funnelpulse_dagster.lib.quality import (
    gold_day_summary,
    ingest_reconciliation,
    mismatched_outside_run,
    ordered_funnel_consistent,
    ordered_funnel_summary,
    silver_daily_totals,
    silver_quality,
    silver_stored_summary,
    silver_violation_counts,
    totals_match,
    viewed_sessions_by_day,
)
from funnelpulse_dagster.rules import SILVER_KEY_RULE, SILVER_ROW_RULES
from funnelpulse_dagster.tables import GOLD_SESSION_FUNNEL_DAILY, SHOP_DIMENSION, SILVER_EVENTS, Table

# the Connect pass leaves these out: the checks are functions of DataFrames, which send the same plan in both modes
pytestmark = pytest.mark.spark_mode_independent

D1, D2 = date(2019, 10, 1), date(2019, 10, 2)


def _table_row(table: Table, values: dict) -> tuple:
    """A row of `table` in its column order: `values` where given, NULL elsewhere."""
    return tuple(values.get(f.name) for f in table.schema.fields)


def _silver_row(**overrides):
    defaults = {
        "event_time": datetime(2019, 10, 1, 10),
        "event_type": "view",
        "product_id": 1,
        "category_id": 2,
        "price": Decimal("4.00"),
        "user_id": 3,
        "user_session": "s",
        "brand_norm": "b",
        "price_band": "<10",
        "is_missing_brand": False,
        "is_missing_category": True,
        "is_missing_session": False,
        "event_date": D1,
    }
    return _table_row(SILVER_EVENTS, {**defaults, **overrides})


def test_reconciliation_over_every_day_a_file_owns():
    owned = {("/a.csv", D1): 7, ("/a.csv", D2): 3}
    assert ingest_reconciliation(
        owned, {("/a.csv", D1): 6, ("/a.csv", D2): 3}, {("/a.csv", D1): 1}, [D1, D2]
    ).passed

    # a line lost on a day of the run: failed, with the file and the day named
    lost = ingest_reconciliation(owned, {("/a.csv", D1): 6, ("/a.csv", D2): 2}, {("/a.csv", D1): 1}, [D1, D2])
    assert not lost.passed and "+1 lines unaccounted for" in lost.description
    assert "/a.csv on 2019-10-02" in lost.description
    assert lost.metadata["mismatched_file_days"].value[0]["day"] == "2019-10-02"

    # a day the run did not build and nothing stored yet: passed, and named as pending
    partial = ingest_reconciliation(owned, {("/a.csv", D1): 6}, {("/a.csv", D1): 1}, [D1])
    assert partial.passed and partial.metadata["pending_lines"].value == 3
    assert partial.metadata["pending_file_days"].value == [
        {"file": "/a.csv", "day": "2019-10-02", "lines": 3}
    ]
    assert "not built yet" in partial.description

    # a day outside the run that holds a different count of the file's rows (it changed): failed
    stale = ingest_reconciliation(owned, {("/a.csv", D1): 6, ("/a.csv", D2): 1}, {("/a.csv", D1): 1}, [D1])
    assert not stale.passed


def test_a_day_another_run_is_writing_is_read_again_until_it_settles():
    owned = {("/a.csv", D1): 7, ("/a.csv", D2): 3}
    # D2 is another run's: its bronze (2 rows) committed, its quarantine (1 row) not yet
    half_written = ({("/a.csv", D1): 6, ("/a.csv", D2): 2}, {("/a.csv", D1): 1})
    settled = ({("/a.csv", D1): 6, ("/a.csv", D2): 2}, {("/a.csv", D1): 1, ("/a.csv", D2): 1})
    assert mismatched_outside_run(owned, *half_written, [D1]) == [("/a.csv", D2)]
    assert mismatched_outside_run(owned, *settled, [D1]) == []
    # a day of the run is this run's own to judge, and a day with nothing yet is pending
    assert mismatched_outside_run(owned, *half_written, [D1, D2]) == []
    assert mismatched_outside_run(owned, {("/a.csv", D1): 6}, {("/a.csv", D1): 1}, [D1]) == []

    def unsettled(bronze, quarantine):
        return mismatched_outside_run(owned, bronze, quarantine, [D1])

    reads = iter([half_written, half_written, settled])
    counts = settled_rows_by_file_day(lambda: next(reads), unsettled, reads=4, pause_seconds=0)
    assert counts == settled
    assert ingest_reconciliation(owned, *counts, [D1]).passed

    # rows that are really missing do not settle: after the last read they are judged as they are
    calls = []
    lost = settled_rows_by_file_day(
        lambda: calls.append(1) or half_written, unsettled, reads=3, pause_seconds=0
    )
    assert len(calls) == 3
    assert not ingest_reconciliation(owned, *lost, [D1]).passed


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
        "no_null_event_time",
        "no_non_positive_price",
        "no_unknown_event_type",
        SILVER_KEY_RULE.check_name,
    }
    assert results[SILVER_KEY_RULE.check_name].metadata["duplicate_keys"].value == 1
    assert results["no_non_positive_price"].metadata["sample"].value  # says which rows

    clean = spark.createDataFrame([_silver_row()], SILVER_EVENTS.schema)
    assert all(r.passed for r in silver_quality(silver_violation_counts(clean), clean))


def test_silver_summary_counts_rows_and_violations_per_day(spark):
    """One job gives silver's stored rows per day (its partitions' row counts) and each rule's
    violations; the check totals are their sums."""
    frame = spark.createDataFrame(
        [
            _silver_row(),
            _silver_row(product_id=9, price=Decimal("0.00")),
            _silver_row(product_id=10, event_type="wishlist", event_date=D2),
        ],
        SILVER_EVENTS.schema,
    )
    summary = silver_stored_summary(frame)
    zero = {rule.check_name: 0 for rule in SILVER_ROW_RULES}
    assert summary == {
        D1: {"day": D1, "rows": 2, **zero, "no_non_positive_price": 1},
        D2: {"day": D2, "rows": 1, **zero, "no_unknown_event_type": 1},
    }
    counts = silver_violation_counts(frame, summary)
    assert counts == {
        **zero,
        "no_non_positive_price": 1,
        "no_unknown_event_type": 1,
        "rows_written": 3,
        "shared_key_hashes": 0,
    }


def _ordered_row(
    day: date, dimension: str, value: str | None, viewed: int, carted: int, purchased: int, **overrides
):
    values = {
        "session_date": day,
        "dimension": dimension,
        "value": value,
        "viewed_sessions": viewed,
        "carted_sessions": carted,
        "purchased_sessions": purchased,
        "bought_sessions": purchased,
        "dropped_after_view": viewed - carted,
        "dropped_after_cart": carted - purchased,
    }
    return _table_row(GOLD_SESSION_FUNNEL_DAILY, {**values, **overrides})


@pytest.mark.slow  # the quick lane keeps the other checks
def test_ordered_funnel_check_catches_bad_steps_and_a_shop_count_silver_disagrees_with(spark):
    """Counted by hand from the silver rows below: on D1 three sessions start and view (s1, s2,
    and s4 just before midnight); s3 starts on D1 but never views; s5 starts on D2 and views."""
    silver = spark.createDataFrame(
        [
            _silver_row(user_session="s1"),
            _silver_row(user_session="s2", event_time=datetime(2019, 10, 1, 11)),
            _silver_row(user_session="s2", event_type="cart", event_time=datetime(2019, 10, 1, 11, 5)),
            _silver_row(user_session="s3", event_type="cart"),
            _silver_row(user_session="s4", event_time=datetime(2019, 10, 1, 23, 59)),
            _silver_row(
                user_session="s4", event_type="cart", event_time=datetime(2019, 10, 2, 0, 1), event_date=D2
            ),
            _silver_row(user_session="s5", event_time=datetime(2019, 10, 2, 9), event_date=D2),
            _silver_row(user_session=None, event_time=datetime(2019, 10, 2, 9), event_date=D2),
        ],
        SILVER_EVENTS.schema,
    )

    def check(rows):
        summary = ordered_funnel_summary(spark.createDataFrame(rows, GOLD_SESSION_FUNNEL_DAILY.schema))
        return summary, ordered_funnel_consistent(summary, viewed_sessions_by_day(silver, [D1, D2]), [D1, D2])

    good = [
        _ordered_row(D1, SHOP_DIMENSION, None, 3, 2, 0),
        _ordered_row(D1, "brand", "b", 3, 2, 0),
        _ordered_row(D2, SHOP_DIMENSION, None, 1, 0, 0),
    ]
    summary, result = check(good)
    assert result.passed
    assert {day: figures["rows"] for day, figures in summary.items()} == {D1: 2, D2: 1}

    # a step that grows (more purchases than carts), and a drop-off that is not a difference
    _, result = check([*good, _ordered_row(D2, "brand", "b", 1, 0, 1)])
    assert not result.passed and result.metadata["inconsistent_rows"].value == 1
    _, result = check([*good, _ordered_row(D2, "price_band", "<10", 1, 0, 0, dropped_after_view=0)])
    assert not result.passed and result.metadata["inconsistent_rows"].value == 1
    # fewer sessions that bought at all than bought in order
    _, result = check([*good, _ordered_row(D2, "category_root", "c", 2, 1, 1, bought_sessions=0)])
    assert not result.passed and result.metadata["inconsistent_rows"].value == 1

    # the shop's viewed sessions differ from silver's recount; a second shop row for a day too
    _, result = check([_ordered_row(D1, SHOP_DIMENSION, None, 4, 2, 0), good[2]])
    assert not result.passed
    assert result.metadata["mismatched_days"].value == {"2019-10-01": {"table": 4, "silver": 3}}
    _, result = check([*good, _ordered_row(D2, SHOP_DIMENSION, None, 1, 0, 0)])
    assert result.metadata["mismatched_days"].value == {"2019-10-02": {"table": 2, "silver": 1}}


def test_key_check_tells_hash_collisions_from_duplicates(spark, monkeypatch):
    """The key check trusts unshared hashes only to prove uniqueness: when hashes collide (here
    every key hashes alike), it groups by the key itself and finds no duplicate among distinct
    keys, and exactly the duplicated key among others."""
    from pyspark.sql import functions as F

    from funnelpulse_dagster.lib import quality

    monkeypatch.setattr(quality, "key_hash", lambda columns: F.lit(7).cast("bigint"))
    distinct = spark.createDataFrame([_silver_row(product_id=p) for p in (1, 2, 3)], SILVER_EVENTS.schema)
    counts = silver_violation_counts(distinct)
    assert counts["shared_key_hashes"] == 1 and counts["rows_written"] == 3  # every hash collides
    key_result = {r.check_name: r for r in silver_quality(counts, distinct)}[SILVER_KEY_RULE.check_name]
    assert key_result.passed and key_result.metadata["duplicate_keys"].value == 0

    doubled = spark.createDataFrame(
        [_silver_row(product_id=1), _silver_row(product_id=1), _silver_row(product_id=2)],
        SILVER_EVENTS.schema,
    )
    results = {r.check_name: r for r in silver_quality(silver_violation_counts(doubled), doubled)}
    assert not results[SILVER_KEY_RULE.check_name].passed
    assert results[SILVER_KEY_RULE.check_name].metadata["duplicate_keys"].value == 1


def test_gold_totals_must_match_to_the_cent(spark):
    silver = spark.createDataFrame(
        [_silver_row(event_type="purchase", price=Decimal("10.01")), _silver_row(product_id=5)],
        SILVER_EVENTS.schema,
    )
    silver_totals = silver_daily_totals(silver)

    def gold(revenue: str):
        from funnelpulse_dagster.tables import GOLD_FUNNEL_HOURLY_BRAND

        values = {f.name: None for f in GOLD_FUNNEL_HOURLY_BRAND.schema.fields}
        values.update(window_date=D1, views=1, carts=0, purchases=1, revenue=Decimal(revenue))
        row = tuple(values[f.name] for f in GOLD_FUNNEL_HOURLY_BRAND.schema.fields)
        return spark.createDataFrame([row], GOLD_FUNNEL_HOURLY_BRAND.schema)

    assert totals_match(gold_day_summary(gold("10.01"), "window_date"), silver_totals, "g").passed
    result = totals_match(gold_day_summary(gold("10.00"), "window_date"), silver_totals, "g")
    assert not result.passed
    assert result.metadata["mismatched_days"].value == {
        "2019-10-01": {"revenue": {"gold": "10.00", "silver": "10.01"}}
    }


def test_rates_check_catches_wrong_and_missing_rates(spark):
    from funnelpulse_dagster.lib.quality import gold_day_summary, rates_valid
    from funnelpulse_dagster.tables import GOLD_FUNNEL_DAILY_BRAND

    def row(views, carts, rate):
        values = {f.name: 0 for f in GOLD_FUNNEL_DAILY_BRAND.schema.fields}
        values.update(date=D1, brand="b", views=views, carts=carts, revenue=Decimal(0))
        for r in ("view_to_cart_rate", "cart_to_purchase_rate", "conversion_rate", "session_conversion_rate"):
            values[r] = None
        values["view_to_cart_rate"] = rate
        values["cart_to_purchase_rate"] = 0.0 if carts else None
        values["conversion_rate"] = 0.0 if views else None
        return tuple(values[f.name] for f in GOLD_FUNNEL_DAILY_BRAND.schema.fields)

    good = spark.createDataFrame([row(4, 2, 0.5), row(0, 0, None)], GOLD_FUNNEL_DAILY_BRAND.schema)
    assert rates_valid(gold_day_summary(good, "date")).passed
    bad = spark.createDataFrame(
        [row(4, 2, None), row(0, 0, 1.0), row(4, 2, -0.5)], GOLD_FUNNEL_DAILY_BRAND.schema
    )
    result = rates_valid(gold_day_summary(bad, "date"))
    assert not result.passed and result.metadata["invalid_rates"].value == {"view_to_cart_rate": 3}


def test_daily_brand_must_equal_sum_of_hours(spark):
    from funnelpulse_dagster.lib.quality import daily_matches_hourly

    hourly = spark.createDataFrame(
        [
            (D1, None, 2, 1, 0, 1, Decimal("3.00")),
            (D1, None, 1, 0, 0, 0, Decimal("0.00")),
            (D1, "b", 5, 1, 1, 0, Decimal("0.00")),
        ],
        "window_date date, brand string, views long, carts long, remove_from_carts long, purchases long, revenue decimal(18,2)",
    )
    schema = "date date, brand string, views long, carts long, remove_from_carts long, purchases long, revenue decimal(18,2)"
    daily = spark.createDataFrame(
        [(D1, None, 3, 1, 0, 1, Decimal("3.00")), (D1, "b", 5, 1, 1, 0, Decimal("0.00"))], schema
    )
    assert daily_matches_hourly(daily, hourly).passed  # the NULL-brand group is compared too
    missing_brand = spark.createDataFrame([(D1, None, 3, 1, 0, 1, Decimal("3.00"))], schema)
    wrong_revenue = spark.createDataFrame(
        [(D1, None, 3, 1, 0, 1, Decimal("3.01")), (D1, "b", 5, 1, 1, 0, Decimal("0.00"))], schema
    )
    assert daily_matches_hourly(missing_brand, hourly).metadata["mismatched_day_brands"].value == 1
    assert not daily_matches_hourly(wrong_revenue, hourly).passed
