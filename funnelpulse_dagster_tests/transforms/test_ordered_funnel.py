"""The ordered session funnel equals an independent session-by-session computation (pandas,
reference.ordered_funnel) on hand-made edge cases and on generated data."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from funnelpulse_dagster.tables import GOLD_SESSION_FUNNEL_DAILY
from funnelpulse_dagster.transforms.ordered_funnel import ordered_funnel, session_steps
from funnelpulse_dagster_tests import reference
from funnelpulse_dagster_tests.live import DAYS

# the Connect pass leaves these out: the ordered funnel is DataFrame -> DataFrame functions, which send the same plan in both modes
pytestmark = pytest.mark.spark_mode_independent

T0 = datetime(2019, 10, 1, 10, 0, 0)
COLUMNS = ["user_session", "event_time", "event_type", "brand_norm", "category_root", "price_band"]


def _event(session, minutes, kind, brand="acme", category="hair", band="<10"):
    return (session, T0 + timedelta(minutes=minutes), kind, brand, category, band)


EDGE_CASES = [
    # in order: view, cart, purchase
    _event("ordered", 0, "view"), _event("ordered", 5, "cart"), _event("ordered", 9, "purchase"),
    # out of order: the purchase and cart come before the view, so nothing after the view
    _event("reversed", 0, "purchase"), _event("reversed", 1, "cart"), _event("reversed", 2, "view"),
    # a purchase with no view at all: not in the ordered funnel, but among the sessions that bought
    _event("no-view", 3, "cart"), _event("no-view", 4, "purchase"),
    # repeated carts: the first one after the view counts
    _event("carts", 0, "cart"), _event("carts", 1, "view"), _event("carts", 3, "cart"),
    _event("carts", 7, "cart"), _event("carts", 30, "purchase"),
    # a purchase before the first cart after the view, and one after it: the later one counts
    _event("rebuy", 0, "view"), _event("rebuy", 1, "purchase"), _event("rebuy", 2, "cart"),
    _event("rebuy", 4, "purchase"),
    # across midnight: counts on the day it started, converting after midnight
    _event("midnight", 13 * 60 + 50, "view"), _event("midnight", 14 * 60 + 5, "cart"),
    _event("midnight", 14 * 60 + 20, "purchase"),
    # two brands: views A, carts A, buys B: A carts, neither buys, the shop converts
    _event("two", 0, "view", brand="alpha"), _event("two", 2, "cart", brand="alpha"),
    _event("two", 4, "view", brand="beta", band="60+"), _event("two", 6, "purchase", brand="beta", band="60+"),
    # no brand and no category: their own NULL group
    _event("nobrand", 0, "view", brand=None, category=None), _event("nobrand", 1, "cart", brand=None, category=None),
    # identical timestamps: view, cart and purchase in the same second count as in order
    _event("same", 0, "purchase"), _event("same", 0, "cart"), _event("same", 0, "view"),
    # a slow purchase, outside a 60-minute window but inside the session
    _event("slow", 0, "view"), _event("slow", 10, "cart"), _event("slow", 120, "purchase"),
]  # fmt: skip


def _frame(spark, events: pd.DataFrame):
    """Silver's columns that the funnel reads, from pandas (NaN and NaT as NULL)."""
    return spark.createDataFrame(
        events[COLUMNS].astype(object).where(events[COLUMNS].notna(), None),
        "user_session string, event_time timestamp, event_type string, brand_norm string, "
        "category_root string, price_band string",
    )


def _compare(spark, events: pd.DataFrame, window_minutes: int | None = None) -> None:
    frame = _frame(spark, events)
    got = ordered_funnel(session_steps(frame, window_minutes)).toPandas()
    expected = reference.ordered_funnel(events, window_minutes)
    keys = ["session_date", "dimension", "value"]
    columns = GOLD_SESSION_FUNNEL_DAILY.schema.fieldNames()
    got = got[columns].sort_values(keys, na_position="first").reset_index(drop=True)
    expected = expected[columns].sort_values(keys, na_position="first").reset_index(drop=True)
    got["session_date"] = pd.to_datetime(got["session_date"]).dt.date
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-6)


@pytest.mark.parametrize("window_minutes", [None, 60])
def test_edge_cases_equal_the_reference(spark, window_minutes):
    _compare(spark, pd.DataFrame(EDGE_CASES, columns=COLUMNS), window_minutes)


def test_edge_cases_say_what_the_definitions_say(spark):
    events = pd.DataFrame(EDGE_CASES, columns=COLUMNS)
    frame = _frame(spark, events)
    rows = {(r["dimension"], r["value"]): r for r in ordered_funnel(session_steps(frame)).collect()}
    shop = rows[("shop", None)]
    # viewed: ordered, reversed, carts, rebuy, midnight, two, nobrand, same, slow; not "no-view"
    assert shop["viewed_sessions"] == 9
    # carted after a view: ordered, carts, rebuy, midnight, two, nobrand, same, slow (not reversed)
    assert shop["carted_sessions"] == 8
    # purchased after that cart: ordered, carts, rebuy, midnight, two (beta bought after alpha's
    # cart), same, slow
    assert shop["purchased_sessions"] == 7
    # bought in any order: the seven, and reversed and no-view, outside the ordered path
    assert shop["bought_sessions"] == 9
    alpha, beta = rows[("brand", "alpha")], rows[("brand", "beta")]
    assert (alpha["carted_sessions"], alpha["purchased_sessions"]) == (1, 0)  # bought beta, not alpha
    assert (beta["viewed_sessions"], beta["carted_sessions"], beta["bought_sessions"]) == (1, 0, 1)
    assert alpha["bought_sessions"] == 0
    assert rows[("brand", None)]["carted_sessions"] == 1  # the no-brand group
    # view → cart, minutes: same 0, nobrand 1, carts 2, two 2, rebuy 2, ordered 5, slow 10, midnight 15
    assert shop["median_seconds_view_to_cart"] == 2 * 60
    # cart → purchase, minutes: same 0, rebuy 2, ordered 4, two 4 (alpha's cart, beta's purchase),
    # midnight 15, carts 27, slow 110: the purchase before rebuy's cart does not count
    assert shop["median_seconds_cart_to_purchase"] == 4 * 60
    # the session across midnight counts on the day it started
    assert {r["session_date"] for r in ordered_funnel(session_steps(frame)).collect()} == {T0.date()}


def test_generated_data_equals_the_reference(spark, sample_raw_dir):
    good, _ = reference.parse_files(sorted(sample_raw_dir.glob("*.csv")))
    first, last = (pd.Timestamp(d).date() for d in DAYS)
    silver = reference.silver(good[good["event_time"].dt.date.between(first, last)])
    silver["event_time"] = pd.to_datetime(silver["event_time"])
    _compare(spark, silver)


def test_one_row_per_session_and_value_streams_over_the_window_order(spark, capsys):
    """The second window leaves the rows sorted by session × value, and the aggregation that keeps
    one row per group reads them in that order (a sort aggregate) instead of hashing every row's
    36-character session id again: the session's settings (runtime/spark_session.py) and the key order
    in session_steps must agree for that."""
    events = pd.DataFrame(EDGE_CASES, columns=COLUMNS)
    frame = _frame(spark, events)
    session_steps(frame).explain()
    plan = capsys.readouterr().out
    assert "SortAggregate(key=[session_hash" in plan, plan
    assert "HashAggregate(keys=[session_hash" not in plan, plan
