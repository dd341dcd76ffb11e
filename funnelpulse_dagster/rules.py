"""Every data-quality rule and funnel metric, stated once.

The silver transform, the streaming job, the asset checks, the serving SQL, the catalog's
descriptions and docs/data-quality.md all read this module. Adding a silver rule is one entry in
`SILVER_ROW_RULES`: the transform drops and counts the rows that break it, the silver asset gets
a blocking check `no_<rule>`, the materialization's `rows_removed_by_rule` gets its key, the
stream counts it, and `funnelpulse rules` prints the docs' table with it
(`test_rules.py` proves each of these for every rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from funnelpulse_dagster.tables import (
    BRONZE_EVENTS,
    EVENT_KEY,
    EVENT_TYPES,
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    GOLD_TABLES,
    SILVER_EVENTS,
)

# -- silver ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRule:
    """A condition every silver row satisfies. Bronze rows that break it are removed and counted
    under `name`; the check `no_<name>` proves no stored silver row breaks it."""

    name: str  # what a breaking row is counted under
    requirement: str  # what every silver row satisfies, in words (check description, docs)
    broken_when: Callable[[], Column]  # built on call: Columns need an active session

    @property
    def check_name(self) -> str:
        return f"no_{self.name}"

    def broken(self) -> Column:
        return self.broken_when()


# In the order they are applied: a dropped row is counted under the first rule it breaks, so the
# per-rule counts add up to the rows removed.
SILVER_ROW_RULES: tuple[RowRule, ...] = (
    RowRule("null_event_time", "event_time is not NULL", lambda: F.col("event_time").isNull()),
    RowRule("null_event_type", "event_type is not NULL", lambda: F.col("event_type").isNull()),
    RowRule(
        "unknown_event_type",
        f"event_type is one of {', '.join(EVENT_TYPES)}",
        lambda: ~F.col("event_type").isin(*EVENT_TYPES),
    ),
    RowRule("null_price", "price is not NULL", lambda: F.col("price").isNull()),
    RowRule("non_positive_price", "price > 0", lambda: F.col("price") <= 0),
)
SILVER_RULE_NAMES = tuple(rule.name for rule in SILVER_ROW_RULES)


@dataclass(frozen=True)
class KeyRule:
    """At most one row per key; the transform keeps one row of each duplicate group."""

    name: str
    key: tuple[str, ...]
    requirement: str

    @property
    def check_name(self) -> str:
        return f"no_{self.name}"


SILVER_KEY_RULE = KeyRule("duplicate_event_key", EVENT_KEY, f"one row per ({', '.join(EVENT_KEY)})")


def violated_rule() -> Column:
    """Name of the first silver rule a row breaks, NULL for a row that passes them all."""
    expr = None
    for rule in SILVER_ROW_RULES:
        broken, name = rule.broken(), F.lit(rule.name)
        expr = F.when(broken, name) if expr is None else expr.when(broken, name)
    return expr


# -- gold metrics ------------------------------------------------------------------------------

FUNNEL_STEPS = ("view", "cart", "purchase")
# metric column -> the event_type it counts (every gold table, the stream, the checks)
EVENT_COUNTS = {
    "views": "view",
    "carts": "cart",
    "remove_from_carts": "remove_from_cart",
    "purchases": "purchase",
}
# revenue: the sum of purchase prices, exact DECIMAL(18,2) (tables.REVENUE_TYPE)
REVENUE = "revenue"
# the totals every gold table must agree on with silver, day by day
RECONCILED_TOTALS = ("views", "carts", "purchases", REVENUE)


@dataclass(frozen=True)
class Rate:
    name: str
    numerator: str
    denominator: str
    meaning: str

    @property
    def formula(self) -> str:
        return f"{self.numerator} / {self.denominator}, NULL where {self.denominator} = 0"


FUNNEL_RATES: tuple[Rate, ...] = (
    Rate("view_to_cart_rate", "carts", "views", "cart events per view event"),
    Rate("cart_to_purchase_rate", "purchases", "carts", "purchase events per cart event"),
    Rate("conversion_rate", "purchases", "views", "purchase events per view event"),
    Rate(
        "session_conversion_rate",
        "purchase_sessions",
        "view_sessions",
        "sessions with a purchase per session with a view (what the anomaly detector judges)",
    ),
)


# the ordered session funnel's rates (gold_session_funnel_daily): step over the step before
ORDERED_RATES: tuple[Rate, ...] = (
    Rate("view_to_cart_rate", "carted_sessions", "viewed_sessions", "sessions that carted after a view"),
    Rate(
        "cart_to_purchase_rate",
        "purchased_sessions",
        "carted_sessions",
        "sessions that bought after that cart",
    ),
    Rate(
        "conversion_rate",
        "purchased_sessions",
        "viewed_sessions",
        "sessions that went the whole way in order",
    ),
)


def signed_percent(change: float) -> str:
    """A relative change as people read it: -0.862 is "−86 %", 2.57 is "+257 %"."""
    percent = round(100 * float(change))
    return f"−{-percent} %" if percent < 0 else f"+{percent} %"


def rate_of(numerator: float | None, denominator: float | None) -> float | None:
    """A rate in Python (the API's range totals), with the tables' NULL rule."""
    if not denominator:
        return None
    return (numerator or 0) / denominator


# -- the anomaly detector's thresholds (transforms/anomalies/__init__.py says what each one does) ------

LOOKBACK_DAYS = 28
MIN_VIEWS = 20  # a brand-hour with fewer views is never flagged
# ... but from this many views on an hour adds its (small) evidence to a run
MIN_EVIDENCE_VIEWS = 5
MAX_RUN_HOURS = 6
# a run's score and the hour's own gate: the setting funnelpulse_evaluation.alternatives.choose
# picks on the tuning seeds (precision at least its PRECISION_FIRST, then the best F1 on the
# incidents within reach), an on-call engineer's trust before recall
# (benchmarks/anomalies.py --seeds tuning --gates scores both around these values)
THRESHOLD = 5.0
CURRENT_HOUR_Z = 1.5
# a flag's severity by its score, lowest first (every flag is at least THRESHOLD: low)
SEVERITY_THRESHOLDS = (("low", THRESHOLD), ("medium", 1.5 * THRESHOLD), ("high", 2 * THRESHOLD))
SEVERITIES = tuple(name for name, _ in SEVERITY_THRESHOLDS)
# the rest of the shop's conversion over the last SHOP_HOURS hours against its baselines (the
# weighted median of the other brands' ratios) moves each brand's expectation: a sale or a
# holiday lifts every brand at once and is no brand's incident; only brands expecting at least
# SHOP_MIN_SESSIONS purchasing sessions over those hours are in the median (a smaller brand's
# ratio is mostly noise, and shrinking it towards 1 biases the median), none weighing more than
# SHOP_MAX_WEIGHT of them, and at least SHOP_MIN_BRANDS of them (so no single brand's incident
# is the median); and the factor is 1 until the other brands' pooled purchasing sessions depart
# from their expectation by SHOP_DEPARTURE_Z Poisson standard deviations (an ordinary hour's
# median wanders by a few per cent: noise, not the shop)
SHOP_HOURS = 3
SHOP_MIN_SESSIONS = 5
SHOP_MAX_WEIGHT = 0.25
SHOP_MIN_BRANDS = 5
SHOP_DEPARTURE_Z = 3.0
# prior strength of each baseline level, in views
PRIOR_VIEWS = {"brand": 2_000, "hour": 1_000, "weekday": 1_000}
# history hours this far from their first-pass baseline are left out of the final one, so an
# earlier anomaly (a spike of purchases) does not inflate the baseline of its hour for weeks
OUTLIER_Z = 3.0
# the median of a χ²(1) variable: turns a median squared residual into a dispersion
CHI2_1_MEDIAN = 0.4549
HINTS_PER_DIMENSION = 2
HINT_PRIOR_VIEWS = 50
HINT_DIMENSIONS = ("category_root", "price_band", "product_id")
# the report's baseline band: single-hour evidence within ±BAND_Z
BAND_Z = 2.0


# -- table checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableCheck:
    """A check over a table as a whole (reconciliations, validity), and the tables it guards."""

    name: str
    requirement: str
    tables: tuple[str, ...]

    @property
    def check_name(self) -> str:
        return self.name


INPUT_ROWS_RECONCILE = TableCheck(
    "input_rows_reconcile",
    "for every file the run touched, over every day the file owns (not only the run's days): its "
    "lines = its bronze rows + its quarantine rows; days not built yet are named, never hidden",
    (BRONZE_EVENTS.name,),
)
TOTALS_MATCH_SILVER = TableCheck(
    "daily_totals_match_silver",
    "per day, views, carts, purchases and revenue (to the cent) equal silver's",
    (GOLD_FUNNEL_HOURLY_BRAND.name, GOLD_FUNNEL_DAILY_CATEGORY.name, GOLD_FUNNEL_HOURLY_PRICE_BAND.name),
)
DAILY_MATCHES_HOURLY = TableCheck(
    "matches_hourly_brand",
    "per day and brand (NULL brand included), views, carts, removes, purchases and revenue = the "
    "sum of that day's hourly brand rows",
    (GOLD_FUNNEL_DAILY_BRAND.name,),
)
RATES_VALID = TableCheck(
    "rates_valid",
    "every rate ≥ 0, and NULL exactly where its denominator is 0",
    tuple(table.name for table in GOLD_TABLES),
)
STREAM_MATCHES_BATCH = TableCheck(
    "closed_hours_match_batch",
    "every hour closed by the watermark equals batch gold_funnel_hourly_brand (on the days batch has built)",
    (GOLD_STREAM_FUNNEL_HOURLY_BRAND.name,),
)
EVERY_ANOMALY_EXPLAINED = TableCheck(
    "every_anomaly_explained",
    "every anomaly row has its baseline and at least one root-cause hint",
    (GOLD_ANOMALIES_HOURLY_BRAND.name,),
)
ORDERED_FUNNEL_CONSISTENT = TableCheck(
    "ordered_funnel_consistent",
    "purchased ≤ carted ≤ viewed sessions, purchased ≤ bought sessions (in any order), and the "
    "drop-offs are their differences on every row, and "
    "per day the shop's viewed sessions = the sessions that started that day with a view",
    ("gold_session_funnel_daily",),
)
# A rewritten day whose row count moves more than this share from the table's previous version,
# and more than twice as far as its input's did, is flagged (a warning: a changed rule or a
# bug, not bad data; the version before is still there to read and compare).
ROW_CHANGE_LIMIT = 0.2
ROW_CHANGE_EXPLAINED = TableCheck(
    "row_change_explained",
    f"a rewritten day's rows differ from the table's previous version by at most {ROW_CHANGE_LIMIT:.0%}, "
    "or by at most twice the relative change of the input table's rows for that day since that "
    "version (a warning, not blocking)",
    (
        SILVER_EVENTS.name,
        *(table.name for table in GOLD_TABLES),
        "gold_session_funnel_daily",
    ),
)
TABLE_CHECKS = (
    INPUT_ROWS_RECONCILE,
    TOTALS_MATCH_SILVER,
    DAILY_MATCHES_HOURLY,
    RATES_VALID,
    STREAM_MATCHES_BATCH,
    EVERY_ANOMALY_EXPLAINED,
    ORDERED_FUNNEL_CONSISTENT,
    ROW_CHANGE_EXPLAINED,
)


def checks_markdown() -> str:
    """The asset-check table of docs/data-quality.md (`funnelpulse rules` prints it)."""
    lines = ["| asset | check | rule |", "|---|---|---|"]
    silver = [(r.check_name, r.requirement) for r in SILVER_ROW_RULES]
    silver.append((SILVER_KEY_RULE.check_name, SILVER_KEY_RULE.requirement))
    rows = [(INPUT_ROWS_RECONCILE.tables, INPUT_ROWS_RECONCILE.name, INPUT_ROWS_RECONCILE.requirement)]
    rows += [((SILVER_EVENTS.name,), name, text) for name, text in silver]
    rows += [(c.tables, c.name, c.requirement) for c in TABLE_CHECKS if c is not INPUT_ROWS_RECONCILE]
    for tables, name, text in rows:
        lines.append(f"| {', '.join(tables)} | `{name}` | {text} |")
    return "\n".join(lines)


def rates_markdown() -> str:
    """The rate table of docs/tables.md."""
    lines = ["| rate | formula | meaning |", "|---|---|---|"]
    lines += [f"| `{r.name}` | {r.formula} | {r.meaning} |" for r in FUNNEL_RATES]
    return "\n".join(lines)
