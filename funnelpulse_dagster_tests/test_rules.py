"""Each rule of rules.py reaches everything that must know it: the transform drops and counts its
breaking rows, the check named after it fails on a stored row that breaks it, the silver asset
declares that check with the rule's own words, and the docs' table is the one rules.py prints.
Adding a rule without an example row below fails `test_every_rule_has_an_example`."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql.types import DoubleType

from funnelpulse_dagster import rules
from funnelpulse_dagster.lib.quality import silver_quality, silver_violation_counts
from funnelpulse_dagster.tables import BRONZE_EVENTS, FUNNEL_METRIC_FIELDS, SILVER_EVENTS
from funnelpulse_dagster.transforms.silver import normalise_events, silver_rule_counts, to_silver
from funnelpulse_dagster_tests.conftest import REPO

# the Connect pass leaves these out: each rule reaches a DataFrame transform and a check, which send the same plan in both modes
pytestmark = pytest.mark.spark_mode_independent

DAY = date(2019, 10, 1)
DOCS = REPO / "docs"
# a value that breaks each rule, and only that rule
BREAKING = {
    "null_event_time": {"event_time": None},
    "null_event_type": {"event_type": None},
    "unknown_event_type": {"event_type": "wishlist"},
    "null_price": {"price": None},
    "non_positive_price": {"price": Decimal("0.00")},
}


def _bronze_row(**overrides):
    row = dict.fromkeys(BRONZE_EVENTS.schema.fieldNames())
    row.update(
        event_time=datetime(2019, 10, 1, 10),
        event_type="view",
        product_id=1,
        category_id=2,
        brand="b",
        price=Decimal("4.00"),
        user_id=3,
        user_session="s",
        source_file="f.csv",
        event_date=DAY,
    )
    row.update(overrides)
    return tuple(row[name] for name in BRONZE_EVENTS.schema.fieldNames())


def test_every_rule_has_an_example():
    assert set(BREAKING) == set(rules.SILVER_RULE_NAMES)


@pytest.mark.parametrize("rule", rules.SILVER_ROW_RULES, ids=lambda r: r.name)
def test_rule_reaches_transform_and_check(spark, rule):
    bronze = spark.createDataFrame(
        [_bronze_row(), _bronze_row(product_id=2, **BREAKING[rule.name])], BRONZE_EVENTS.schema
    )
    # the transform keeps the good row only and counts the other under the rule
    assert [r["product_id"] for r in to_silver(bronze).collect()] == [1]
    counts = {r["rule"]: r["count"] for r in silver_rule_counts(bronze).collect()}
    assert counts == {"passed": 1, rule.name: 1}
    # the check named after the rule fails on a stored row that breaks it, in the rule's words
    stored = bronze.transform(normalise_events).select(*SILVER_EVENTS.schema.fieldNames())
    results = {r.check_name: r for r in silver_quality(silver_violation_counts(stored), stored)}
    failed = {name for name, result in results.items() if not result.passed}
    assert failed == {rule.check_name}
    assert results[rule.check_name].description == rule.requirement
    assert results[rule.check_name].metadata["violations"].value == 1


def test_silver_asset_declares_a_check_per_rule():
    from funnelpulse_dagster.defs.lakehouse.silver import silver_events

    declared = {spec.name: spec for spec in silver_events.check_specs}
    stated = (*rules.SILVER_ROW_RULES, rules.SILVER_KEY_RULE, rules.ROW_CHANGE_EXPLAINED)
    assert {name: spec.description for name, spec in declared.items()} == {
        r.check_name: r.requirement for r in stated
    }
    # every rule blocks; the comparison with the previous version only warns
    assert [n for n, spec in declared.items() if not spec.blocking] == [rules.ROW_CHANGE_EXPLAINED.check_name]


def test_every_declared_check_is_a_rule():
    """No asset check is named or described outside rules.py."""
    from funnelpulse_dagster.definitions import defs

    stated = {r.check_name: r.requirement for r in (*rules.SILVER_ROW_RULES, rules.SILVER_KEY_RULE)}
    stated |= {c.name: c.requirement for c in rules.TABLE_CHECKS}
    graph = defs.get_repository_def().asset_graph
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        assert stated.get(key.name) == spec.description, key
        if key.name in {c.name for c in rules.TABLE_CHECKS}:
            owner = next(c for c in rules.TABLE_CHECKS if c.name == key.name)
            assert key.asset_key.to_user_string() in owner.tables, key


def test_docs_show_the_rules_as_stated():
    """docs/data-quality.md and docs/tables.md hold the tables `funnelpulse rules` prints."""
    assert rules.checks_markdown() in (DOCS / "data-quality.md").read_text()
    assert rules.rates_markdown() in (DOCS / "tables.md").read_text()


def test_rates_and_schema_agree():
    rate_columns = [name for name, dtype in FUNNEL_METRIC_FIELDS if isinstance(dtype, DoubleType)]
    assert [r.name for r in rules.FUNNEL_RATES] == rate_columns
    metric_columns = {name for name, _ in FUNNEL_METRIC_FIELDS}
    assert {r.numerator for r in rules.FUNNEL_RATES} | {
        r.denominator for r in rules.FUNNEL_RATES
    } <= metric_columns
    assert set(rules.EVENT_COUNTS) <= metric_columns
