"""The web service, its DuckDB store and the funnel report, on a lake built by the real pipeline.

Answers are compared with the pandas reference computed from the raw sample files (never with
the tables' own numbers read back), bad parameters must give a 4xx with a message, and the
dashboard is loaded in a real headless Chromium.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import schemathesis
from dagster import DagsterInstance, materialize
from deltalake import DeltaTable, write_deltalake
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from funnelpulse_dagster.defs.reports.report_asset import REPORT_FILE, funnel_report
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.reports.funnel_report import CHARTS, TOP_BRANDS, TREND_BRANDS
from funnelpulse_dagster.resources import LakeResource, ReportsResource
from funnelpulse_dagster.serving.app import create_app
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_SESSION_FUNNEL_DAILY,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    GOLD_TABLES,
    LIVE_TABLES,
    PRICE_BANDS,
    SILVER_EVENTS,
)
from funnelpulse_dagster_tests import reference
from funnelpulse_dagster_tests.live import DAYS, anomaly_row, free_port

pytestmark = pytest.mark.slow  # over a lake built by replay and a streaming run

FIRST, LAST = (date.fromisoformat(d) for d in DAYS)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ref(sample_raw_dir) -> pd.DataFrame:
    """Silver events of the sample's days, by the independent pandas reference."""
    good, _ = reference.parse_files(sorted(sample_raw_dir.glob("*.csv")))
    return reference.silver(good[good["event_time"].dt.date.between(FIRST, LAST)])


@pytest.fixture(scope="module")
def top_brands(ref) -> list[str]:
    revenue = reference.daily_brand(ref).dropna(subset=["brand"]).groupby("brand")["revenue"].sum()
    return list(revenue.sort_values(ascending=False).index[:3])


@pytest.fixture(scope="module")
def served_lake(tmp_path_factory, spark, batch_lake, streamed, top_brands) -> Path:
    """The sample's batch and live gold (linked from the lake the pipeline built) plus six
    anomaly rows in the anomaly table's format (three days are too few for the detector to
    flag anything, and the API's filters need rows to filter)."""
    root = tmp_path_factory.mktemp("served") / "tables"
    root.mkdir()
    built = Path(batch_lake.root)
    for table in (
        *GOLD_TABLES,
        SILVER_EVENTS,
        GOLD_STREAM_FUNNEL_HOURLY_BRAND,
        *LIVE_TABLES,
        GOLD_SESSION_FUNNEL_DAILY,
    ):
        (root / table.name).symlink_to(built / table.name, target_is_directory=True)
    a, b, c = top_brands
    rows = [
        anomaly_row(a, datetime(2019, 10, 2, 10), "drop", "high", 10.0),
        anomaly_row(a, datetime(2019, 10, 2, 11), "drop", "medium", 7.5),
        anomaly_row(b, datetime(2019, 10, 2, 15), "spike", "low", 5.0),
        anomaly_row(a, datetime(2019, 10, 3, 9), "spike", "high", 12.0),
        anomaly_row(c, datetime(2019, 10, 3, 9), "drop", "low", 4.6),
        anomaly_row(b, datetime(2019, 10, 3, 20), "drop", "medium", 7.0),
    ]
    table = GOLD_ANOMALIES_HOURLY_BRAND
    frame = spark.createDataFrame(
        [tuple(r[f] for f in table.schema.fieldNames()) for r in rows], table.schema
    )
    LakeResource(root=str(root)).replace_partitions(frame, table, [FIRST, date(2019, 10, 2), LAST])
    return root


@pytest.fixture(scope="module")
def anomaly_frame(served_lake) -> pd.DataFrame:
    frame = DeltaTable(str(served_lake / GOLD_ANOMALIES_HOURLY_BRAND.name)).to_pandas()
    for column in ("window_start", "window_end"):  # naive UTC, as the tables mean it
        frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


@pytest.fixture(scope="module")
def client(served_lake, tmp_path_factory):
    store = LakeStore(
        str(served_lake), mode="replica", database=tmp_path_factory.mktemp("replica") / "r.duckdb"
    )
    with TestClient(create_app(store, refresh_seconds=None)) as test_client:
        yield test_client
    store.close()


# -- helpers ---------------------------------------------------------------------------------
def _api_value(value):
    """A reference value in the API's JSON form."""
    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _same(got: dict, expected: dict) -> None:
    for key, want in expected.items():
        want = _api_value(want)
        if isinstance(want, float):
            assert got[key] == pytest.approx(want, rel=1e-9), key
        else:
            assert got[key] == want, key


def _get(client, url: str, **params) -> dict:
    response = client.get(url, params=params or None)
    assert response.status_code == 200, response.text
    return response.json()


_MISSING = "<missing>"


def _totals(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Sums of the additive funnel columns per value of `column`, rates from the sums."""
    additive = [
        "views",
        "carts",
        "remove_from_carts",
        "purchases",
        "revenue",
        "view_sessions",
        "purchase_sessions",
    ]
    grouped = frame.groupby(frame[column].fillna(_MISSING))[additive].sum()
    grouped["conversion_rate"] = grouped["purchases"] / grouped["views"]
    grouped.index = pd.Index([None if v == _MISSING else v for v in grouped.index], dtype=object)
    return grouped


# -- the API ---------------------------------------------------------------------------------
@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_health_lists_every_served_table(client, served_lake, ref):
    health = _get(client, "/health")
    assert health["status"] == "ok" and health["mode"] == "replica"
    hourly = health["tables"]["gold_funnel_hourly_brand"]
    assert hourly["rows"] == len(reference.hourly_brand(ref))
    assert (hourly["first"], hourly["last"], hourly["partitions"]) == (DAYS[0], DAYS[1], 3)
    assert health["tables"][GOLD_ANOMALIES_HOURLY_BRAND.name]["rows"] == 6
    assert health["tables"][GOLD_STREAM_FUNNEL_HOURLY_BRAND.name]["rows"] > 0


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_hourly_brand_funnel_equals_the_reference_and_pages(client, ref, top_brands):
    brand = top_brands[0]
    expected = reference.hourly_brand(ref)
    expected = expected[expected["brand"] == brand].sort_values("window_start").to_dict("records")
    body = _get(
        client, f"/api/funnel/hourly?dimension=brand&value={brand}&start={DAYS[0]}&end={DAYS[1]}&limit=5000"
    )
    assert body["total"] == len(expected) == len(body["items"]) > 24
    for got, want in zip(body["items"], expected, strict=True):
        _same(got, want)
    # pages of 10 put together are the same rows
    pages, offset = [], 0
    while offset is not None:
        page = _get(
            client, f"/api/funnel/hourly?value={brand}&start={DAYS[0]}&end={DAYS[1]}&limit=10&offset={offset}"
        )
        assert page["total"] == len(expected)
        pages.extend(page["items"])
        offset = page["next_offset"]
    assert pages == body["items"]
    # defaults: the last 7 days the table has, i.e. all three
    assert _get(client, f"/api/funnel/hourly?value={brand}")["total"] == len(expected)


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_hourly_price_band_and_daily_category_equal_the_reference(client, ref):
    bands = reference.hourly_price_band(ref)
    for band in PRICE_BANDS:
        want = bands[bands["price_band"] == band].sort_values("window_start").to_dict("records")
        body = _get(client, "/api/funnel/hourly", dimension="price_band", value=band, limit=5000)
        assert body["total"] == len(want)
        for got, row in zip(body["items"], want, strict=True):
            _same(got, row)
    categories = reference.daily_category(ref)
    body = _get(client, "/api/funnel/daily?dimension=category&limit=5000")
    assert body["total"] == len(categories)
    got = {(r["date"], r["category_root"]): r for r in body["items"]}
    for row in categories.to_dict("records"):
        _same(got[(row["date"].isoformat(), row["category_root"])], row)


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_brands_breakdowns_and_totals_equal_the_reference(client, ref):
    daily = reference.daily_brand(ref)
    expected = _totals(daily, "brand").sort_values("revenue", ascending=False)
    body = _get(client, "/api/brands?limit=5000")
    assert body["total"] == len(expected)
    assert [r["revenue"] for r in body["items"]] == sorted(
        (r["revenue"] for r in body["items"]), reverse=True
    )
    by_brand = {r["value"]: r for r in body["items"]}
    for brand, row in expected.iterrows():
        _same(by_brand[brand], row.to_dict())
    # search narrows the list
    name = next(b for b in expected.index if b)
    assert name in [r["value"] for r in _get(client, f"/api/brands?search={name[:4]}")["items"]]
    for dimension, frame, column in (
        ("category", reference.daily_category(ref), "category_root"),
        ("price_band", reference.hourly_price_band(ref), "price_band"),
    ):
        rows = {r["value"]: r for r in _get(client, f"/api/breakdown?dimension={dimension}")["items"]}
        for value, row in _totals(frame, column).iterrows():
            _same(rows[value], row.to_dict())
    totals = _get(client, "/api/funnel/totals")
    assert (totals["start"], totals["end"]) == DAYS
    counts = ref["event_type"].value_counts()
    assert (totals["views"], totals["carts"], totals["remove_from_carts"], totals["purchases"]) == (
        counts["view"],
        counts["cart"],
        counts["remove_from_cart"],
        counts["purchase"],
    )
    assert totals["revenue"] == float(sum(ref.loc[ref["event_type"] == "purchase", "price"], Decimal(0)))


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_live_funnel_sums_the_streaming_table(client, ref):
    live = _get(client, "/api/live?hours=6")
    assert len(live["hours"]) == 6
    hourly = reference.hourly_brand(ref)
    newest = live["latest_window_start"]
    for hour in live["hours"]:
        rows = hourly[hourly["window_start"] == pd.Timestamp(hour["window_start"].rstrip("Z"))]
        assert hour["views"] == rows["views"].sum() and hour["purchases"] == rows["purchases"].sum()
        assert hour["revenue"] == pytest.approx(float(sum(rows["revenue"], Decimal(0))))
        assert hour["conversion_rate"] == pytest.approx(rows["purchases"].sum() / rows["views"].sum())
    assert live["hours"][-1]["window_start"] == newest
    top = hourly[hourly["window_start"] == pd.Timestamp(newest.rstrip("Z"))].sort_values(
        "views", ascending=False
    )
    assert [r["views"] for r in live["top_brands"]] == top["views"].head(10).tolist()
    # the open hours are not in the live table yet: the newest closed hour is before the last event
    assert pd.Timestamp(newest.rstrip("Z")) < ref["event_time"].max() - pd.Timedelta(hours=1)
    # ... they are in the provisional open state, equal to the reference's hours after it
    opened = live["open"]
    closed_end = pd.Timestamp(newest.rstrip("Z")) + pd.Timedelta(hours=1)
    expected = (
        hourly[hourly["window_start"] >= closed_end].groupby("window_start")[["views", "purchases"]].sum()
    )
    assert opened["provisional"] is True and len(opened["hours"]) == len(expected) > 0
    for hour in opened["hours"]:
        start = pd.Timestamp(hour["window_start"].rstrip("Z"))
        assert (hour["views"], hour["purchases"]) == tuple(expected.loc[start]), start
    assert pd.Timestamp(opened["as_of"].rstrip("Z")) == ref["event_time"].max()
    minutes = pd.DataFrame(opened["minutes"])
    shown = minutes.set_index(pd.to_datetime(minutes["window_start"].str.rstrip("Z")))["views"]
    viewed = ref[ref["event_type"] == "view"]
    per_minute = viewed.groupby(viewed["event_time"].dt.floor("min")).size()
    assert shown.index.max() == ref["event_time"].max().floor("min")
    assert shown.to_dict() == per_minute.reindex(shown.index, fill_value=0).astype(int).to_dict()
    # every minute of the last hour that had a view is shown
    recent = per_minute[per_minute.index >= ref["event_time"].max() - pd.Timedelta(minutes=59)]
    assert set(recent.index) <= set(shown.index)


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_ordered_funnel_with_the_week_before(client, ref, top_brands):
    expected = reference.ordered_funnel(ref.assign(event_time=pd.to_datetime(ref["event_time"])))
    # default: the last day, the shop
    last = _get(client, "/api/funnel/ordered")
    shop = expected[(expected["dimension"] == "shop") & (expected["session_date"] == LAST)].iloc[0]
    assert (last["start"], last["end"], last["dimension"], last["value"]) == (LAST.isoformat(),) * 2 + (
        "shop",
        None,
    )
    for column in (
        "viewed_sessions",
        "carted_sessions",
        "purchased_sessions",
        "bought_sessions",
        "dropped_after_view",
    ):
        assert last[column] == shop[column], column
    # the buyers the ordered path leaves out, shown beside it
    assert last["bought_outside_path"] == shop["bought_sessions"] - shop["purchased_sessions"] > 0
    assert last["conversion_rate"] == pytest.approx(shop["purchased_sessions"] / shop["viewed_sessions"])
    [day] = last["days"]
    assert day["median_seconds_view_to_purchase"] == pytest.approx(shop["median_seconds_view_to_purchase"])
    # the week before has no data: zeros, and no relative change
    assert last["previous_week"]["viewed_sessions"] == 0
    assert last["change"]["viewed_sessions"] == {"absolute": int(shop["viewed_sessions"]), "relative": None}
    # one brand over the three days
    brand = top_brands[0]
    body = _get(client, f"/api/funnel/ordered?dimension=brand&value={brand}&start={FIRST}&end={LAST}")
    rows = expected[(expected["dimension"] == "brand") & (expected["value"] == brand)]
    assert body["viewed_sessions"] == rows["viewed_sessions"].sum()
    assert body["purchased_sessions"] == rows["purchased_sessions"].sum()
    assert body["bought_sessions"] == rows["bought_sessions"].sum()
    assert [d["session_date"] for d in body["days"]] == sorted(d.isoformat() for d in rows["session_date"])
    # bad parameters are the caller's error
    assert client.get("/api/funnel/ordered?dimension=brand").status_code == 400
    assert client.get("/api/funnel/ordered?dimension=colour").status_code == 422


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_anomaly_filters(client, anomaly_frame, top_brands):
    def keys(body):
        return [(r["window_start"], r["brand"]) for r in body["items"]]

    def expect(frame):
        frame = frame.sort_values(["window_start", "score"], ascending=[False, False])
        return [
            (t.strftime(TIME_FORMAT), b) for t, b in zip(frame["window_start"], frame["brand"], strict=True)
        ]

    every = _get(client, "/api/anomalies")
    assert every["total"] == 6 and keys(every) == expect(anomaly_frame)
    first = every["items"][0]
    # when it could first be flagged (the fixture's rows: two hours after the hour began)
    assert pd.Timestamp(first["detectable_at"]) - pd.Timestamp(first["window_start"]) == pd.Timedelta(hours=2)
    assert first["root_cause_hints"][0] == {
        "dimension": "price_band",
        "value": "<10",
        "views": 40,
        "purchases": 1,
        "expected_purchases": 6.5,
        "contribution": -5.5,
    }
    f = anomaly_frame
    assert keys(_get(client, "/api/anomalies?type=drop")) == expect(f[f["anomaly_type"] == "drop"])
    assert keys(_get(client, f"/api/anomalies?brand={top_brands[0]}")) == expect(
        f[f["brand"] == top_brands[0]]
    )
    assert keys(_get(client, "/api/anomalies?severity=high")) == expect(f[f["severity"] == "high"])
    since = "2019-10-02T11:00:00Z"
    window = f[
        (f["window_start"] >= pd.Timestamp("2019-10-02 11:00"))
        & (f["window_start"] < pd.Timestamp("2019-10-03 09:00"))
    ]
    assert keys(_get(client, f"/api/anomalies?since={since}&until=2019-10-03T09:00:00Z")) == expect(window)
    page = _get(client, "/api/anomalies?limit=4&offset=4")
    assert page["total"] == 6 and len(page["items"]) == 2 and page["next_offset"] is None


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/funnel/hourly?start=2019-10-03&end=2019-10-01", 400, "before start"),
        ("/api/funnel/hourly?start=yesterday", 422, "YYYY-MM-DD"),
        ("/api/funnel/hourly?start=0", 422, "YYYY-MM-DD"),  # not epoch seconds
        ("/api/funnel/hourly?dimension=category", 422, "brand"),
        ("/api/funnel/daily?dimension=price_band", 422, "category"),
        ("/api/funnel/hourly?limit=0", 422, "greater than or equal"),
        ("/api/funnel/hourly?limit=100000", 422, "less than or equal"),
        ("/api/funnel/hourly?offset=-1", 422, "greater than or equal"),
        ("/api/brands?search=" + "x" * 500, 422, "at most 100"),
        ("/api/anomalies?type=dip", 422, "'drop' or 'spike'"),
        ("/api/anomalies?severity=extreme", 422, "low"),
        ("/api/anomalies?since=2019-10-03&until=2019-10-01", 400, "before since"),
        ("/api/anomalies?since=not-a-time", 422, "ISO 8601"),
        ("/api/live?hours=0", 422, "greater than or equal"),
        ("/api/breakdown?dimension=user", 422, "brand"),
        ("/api/funnel/hourly?value=%27%3B%20DROP%20TABLE%20x%3B--", 200, ""),
    ],
)
def test_bad_parameters_get_a_4xx_with_a_message(client, url, status, message):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert message in response.text
    if status == 200:  # a hostile value is only a value: no rows, no error
        assert response.json()["total"] == 0


def test_a_valid_time_without_a_utc_equivalent_reads_as_the_earliest_time(client):
    # 0001-01-01T00:00:01+00:01 is a schema-valid date-time whose UTC time is before year 1
    no_utc = client.get("/api/funnel/totals", params={"as_of": "0001-01-01T00:00:01+00:01"})
    earliest = client.get("/api/funnel/totals", params={"as_of": "0001-01-01T00:00:00Z"})
    assert no_utc.status_code == earliest.status_code < 500, no_utc.text
    assert no_utc.json() == earliest.json()


RAW = "raw:"  # sent as is, percent-escapes included: bytes that are not UTF-8
HOSTILE_BY_TYPE = {
    "integer": [
        "99999999999999999999",
        "-99999999999999999999",
        str(2**63),
        str(2**31),
        "1e9",
        "0x10",
        "",
        " ",
    ],
    "date": ["0001-01-01", "9999-12-31", "2019-02-30", "20191001", "2019-10-01T00:00:00", "-1"],
    "date-time": [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59Z",
        "2019-10-01",
        "1e30",
    ],
    "string": [
        "\x00",
        "%",
        "_",
        "\\",
        "'; DROP TABLE x; --",
        "ü" * 300,
        "x" * 10_000,
        '"',
        RAW + "%FF%FE",
        RAW + "%ED%A0%80",
    ],
}


def _hostile_requests(client) -> list[tuple[str, dict]]:
    """Every query parameter of every endpoint, with each hostile value of its type."""
    requests = []
    for path, item in _get(client, "/openapi.json")["paths"].items():
        for parameter in item["get"].get("parameters", []):
            schema = parameter["schema"]
            options = schema.get("anyOf", [schema])
            kinds = {o.get("format") or o.get("type") for o in options} - {"null", None}
            for kind in kinds:
                for value in HOSTILE_BY_TYPE.get(kind, HOSTILE_BY_TYPE["string"]):
                    requests.append((path, {parameter["name"]: value}))
    return requests


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_hostile_parameters_never_reach_a_500(client):
    requests = _hostile_requests(client)
    assert len(requests) > 100  # every endpoint and parameter is covered
    server_errors = []
    for path, params in requests:
        ((name, value),) = params.items()
        if value.startswith(RAW):
            response = client.get(f"{path}?{name}={value[len(RAW) :]}")
        else:
            response = client.get(path, params=params)
        if response.status_code >= 500:
            server_errors.append((path, params, response.status_code, response.text[:200]))
        else:
            assert response.headers["content-type"].startswith("application/json"), (path, params)
    assert not server_errors, server_errors


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_the_api_keeps_its_openapi_contract(client):
    """schemathesis over the served app's own OpenAPI: schema-valid (positive) and
    schema-invalid (negative) requests for every operation. No server error, every status, content
    type and body as documented, every valid request answered and every invalid one refused.
    (Hypothesis drives each operation here; schemathesis's pytest plugin predates this pytest.)"""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    # a range that ends before it starts is a rule across two parameters, which OpenAPI cannot
    # state: each operation documents its 400 for it, and a schema-valid request may get one
    accepted = schema.config.checks.positive_data_acceptance
    accepted.expected_statuses = [*accepted.expected_statuses, "400"]
    failures, requests = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.query else [])
        for mode in modes:

            @given(operation.as_strategy(generation_mode=mode))
            @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def exercise(case):
                nonlocal requests
                requests += 1
                case.call_and_validate()

            try:
                exercise()
            except Exception as failure:  # noqa: BLE001 (every operation and mode is tried first)
                failures.append(f"{operation.label} ({mode.value}): {str(failure)[:1500]}")
    assert requests > 300
    assert not failures, "\n\n".join(failures)


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_openapi_documents_every_endpoint(client):
    paths = _get(client, "/openapi.json")["paths"]
    for path in (
        "/health",
        "/api/brands",
        "/api/breakdown",
        "/api/funnel/hourly",
        "/api/funnel/daily",
        "/api/funnel/totals",
        "/api/funnel/ordered",
        "/api/live",
        "/api/anomalies",
    ):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_rows_are_written_as_json_by_duckdb_in_the_api_format():
    """The row text DuckDB writes: ISO-8601 UTC timestamps, dates as days, money as numbers,
    NULL, NaN and ±Infinity (top level or nested) as null, the order asked for, and pages that
    tile the rows with a total from the same scan."""
    import duckdb

    from funnelpulse_dagster.serving import jsonrows

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES "
        "(TIMESTAMP '2019-10-01 13:00:00', DATE '2019-10-01', 'b\"x', 12.30::DECIMAL(18,2), 0.5, [{'c': 1.5}]), "
        "(TIMESTAMP '2019-10-01 14:00:00', DATE '2019-10-01', NULL, 0.00::DECIMAL(18,2), 'nan'::DOUBLE, [{'c': 'inf'::DOUBLE}]), "
        "(TIMESTAMP '2019-10-02 00:00:00', DATE '2019-10-02', 'NaN brand', 1.05::DECIMAL(18,2), '-inf'::DOUBLE, [])"
        ") v(window_start, d, brand, revenue, rate, hints)"
    )
    expected = [
        {
            "window_start": "2019-10-02T00:00:00Z",
            "d": "2019-10-02",
            "brand": "NaN brand",
            "revenue": 1.05,
            "rate": None,
            "hints": [],
        },
        {
            "window_start": "2019-10-01T14:00:00Z",
            "d": "2019-10-01",
            "brand": None,
            "revenue": 0.0,
            "rate": None,
            "hints": [{"c": None}],
        },
        {
            "window_start": "2019-10-01T13:00:00Z",
            "d": "2019-10-01",
            "brand": 'b"x',
            "revenue": 12.3,
            "rate": 0.5,
            "hints": [{"c": 1.5}],
        },
    ]
    text = jsonrows.rows_json(con, "SELECT * FROM t", [], order_by="window_start DESC")
    assert json.loads(text) == expected
    json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))  # strict
    assert jsonrows.rows_json(con, "SELECT * FROM t WHERE false", [], order_by="d") == "[]"

    pages = [
        jsonrows.paged(con, "SELECT * FROM t", [], "window_start DESC", 2, offset) for offset in (0, 2, 4)
    ]
    assert [p.items for p in pages] == [expected[:2], expected[2:], []]
    assert [(p.total, p.count, p.next_offset) for p in pages] == [(3, 2, 2), (3, 1, None), (3, 0, None)]
    body = json.loads(pages[0].as_json(dimension="brand"))
    assert body == {
        "dimension": "brand",
        "items": expected[:2],
        "total": 3,
        "limit": 2,
        "offset": 0,
        "next_offset": 2,
    }
    assert json.loads(pages[2].as_json())["items"] == []


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
# -- the store -------------------------------------------------------------------------------
def test_replica_copies_only_changed_partitions_and_drops_removed_ones(served_lake, tmp_path):
    lake = tmp_path / "tables"
    table = GOLD_FUNNEL_DAILY_CATEGORY
    shutil.copytree(served_lake / table.name, lake / table.name)
    store = LakeStore(str(lake), mode="replica", database=tmp_path / "r.duckdb")
    first = store.refresh()
    assert sorted(first.changed[table.name]) == list(DAYS[:1]) + ["2019-10-02", DAYS[1]]
    assert store.refresh().changed == {}  # nothing moved: nothing copied
    # another writer (delta-rs, no Spark) rewrites one day with one row less and deletes another
    location = str(lake / table.name)
    day_rows = DeltaTable(location).to_pyarrow_table(filters=[("date", "=", date(2019, 10, 2))])
    write_deltalake(
        location, day_rows.slice(0, day_rows.num_rows - 1), mode="overwrite", predicate="date = '2019-10-02'"
    )
    DeltaTable(location).delete(f"date = '{DAYS[0]}'")
    second = store.refresh()
    assert second.changed == {table.name: ["2019-10-02"]} and second.removed == {table.name: [DAYS[0]]}
    con = store.cursor()
    got = dict(con.execute(f'SELECT "date"::VARCHAR, count(*) FROM "{table.name}" GROUP BY 1').fetchall())
    assert got == {
        "2019-10-02": day_rows.num_rows - 1,
        DAYS[1]: DeltaTable(location).to_pyarrow_table(filters=[("date", "=", date.fromisoformat(DAYS[1]))]).num_rows,
    }
    store.close()
    # the same file opened again starts from what it copied
    reopened = LakeStore(str(lake), mode="replica", database=tmp_path / "r.duckdb")
    assert reopened.refresh().changed == {}
    reopened.close()


def test_a_table_serves_only_the_files_its_log_committed(spark, served_lake, tmp_path):
    """The streaming gold as the stream writes it (Delta's sink, a commit per micro-batch) plus a
    stray file a failed batch left in a partition folder: the store serves exactly the
    committed rows, as Spark reads them."""
    source = tmp_path / "source"
    lake = tmp_path / "tables"
    sink = lake / GOLD_STREAM_FUNNEL_HOURLY_BRAND.name
    batch_gold = Lake(str(served_lake)).read(spark, GOLD_FUNNEL_HOURLY_BRAND)
    for day in DAYS[0], "2019-10-02", DAYS[1]:
        batch_gold.filter(f"window_date = '{day}'").write.mode("append").parquet(str(source))
        query = (
            spark.readStream.schema(batch_gold.schema)
            .parquet(str(source))
            .writeStream.format("delta")
            .option("checkpointLocation", str(tmp_path / "cp"))
            .partitionBy("window_date")
            .trigger(availableNow=True)
            .start(str(sink))
        )
        query.awaitTermination()
    assert len(DeltaTable(str(sink)).history()) == 3  # a commit per micro-batch
    committed = Lake(str(lake)).read(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND).count()
    # a file a failed batch left behind, with rows that must not be served
    stray = next(f.uri for f in Lake(str(served_lake)).data_files(GOLD_FUNNEL_HOURLY_BRAND))
    shutil.copy(stray, sink / f"window_date={DAYS[1]}" / "part-99999-stray.c000.zstd.parquet")
    for mode in ("replica", "parquet"):
        store = LakeStore(str(lake), mode=mode, database=tmp_path / f"{mode}.duckdb")
        store.refresh()
        got = (
            store.cursor()
            .execute(f'SELECT count(*) FROM "{GOLD_STREAM_FUNNEL_HOURLY_BRAND.name}"')
            .fetchone()[0]
        )
        assert got == committed == batch_gold.count(), mode
        store.close()


# -- the report ------------------------------------------------------------------------------
def _decode(values):
    """A plotly array from the HTML: a list, or a typed array {dtype, bdata}."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).tolist()
    return list(values)


def _floats(values) -> list[float]:
    return [float("nan") if v is None or pd.isna(v) else float(v) for v in values]


def _charts_in(document: str) -> dict[str, list[dict]]:
    """Chart id → its traces, parsed from the Plotly.newPlot calls in the file."""
    decoder = json.JSONDecoder()
    charts = {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', document):
        traces, _ = decoder.raw_decode(document, match.end())
        charts[match.group(1)] = traces
    return charts


@pytest.fixture(scope="module")
def report(served_lake, spark_resource, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reports")
    result = materialize(
        [funnel_report],
        instance=DagsterInstance.ephemeral(),
        resources={
            "spark": spark_resource,
            "lake": LakeResource(root=str(served_lake)),
            "reports": ReportsResource(root=str(out)),
        },
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return out / REPORT_FILE, event.materialization.metadata


def test_report_is_one_offline_file_with_every_chart(report):
    path, metadata = report
    document = path.read_text()
    assert metadata["path"].value == str(path)
    assert "revenue" in metadata["summary"].value and metadata["start"].value == DAYS[0]
    # plotly.js is inside the file and nothing is fetched from the network
    assert "plotly.js v" in document or "Plotly" in document[:200_000]
    assert not re.search(r'<script[^>]+src=["\']https?://', document)
    assert set(_charts_in(document)) == set(CHARTS)


def test_report_numbers_equal_the_reference(report, ref, anomaly_frame):
    path, metadata = report
    document = path.read_text()
    charts = _charts_in(document)
    daily = reference.daily_brand(ref)
    named = _totals(daily.dropna(subset=["brand"]), "brand").sort_values("revenue", ascending=False)
    # top brands (bars drawn bottom-up)
    (bars,) = charts["top-brands"]
    assert _decode(bars["y"])[::-1] == list(named.index[:TOP_BRANDS])
    assert _decode(bars["x"])[::-1] == pytest.approx([float(v) for v in named["revenue"][:TOP_BRANDS]])
    # daily revenue and conversion of the top brands
    for chart, column in (("daily-revenue", "revenue"), ("daily-conversion", "conversion_rate")):
        traces = charts[chart]
        assert [t["name"] for t in traces] == list(named.index[:TREND_BRANDS])
        for trace in traces:
            rows = daily[daily["brand"] == trace["name"]].sort_values("date")
            assert _decode(trace["x"]) == [d.isoformat() for d in rows["date"]]
            # a day without views has no conversion: null in the chart, None in the reference
            assert _floats(_decode(trace["y"])) == pytest.approx(_floats(rows[column]), nan_ok=True)
    # categories (NULL shown as "unknown") and price bands
    for chart, frame, column in (
        ("category", reference.daily_category(ref), "category_root"),
        ("price-band", reference.hourly_price_band(ref), "price_band"),
    ):
        totals = _totals(frame, column)
        revenue, conversion = charts[chart]
        labels = _decode(revenue["x"])
        if chart == "category":  # the categoryless group is a note, not a bar (it dwarfs the rest)
            aside = float(totals.loc[[v is None for v in totals.index], "revenue"].iloc[0])
            totals = totals[[v is not None for v in totals.index]]
            assert f"revenue ${aside:,.0f}" in document
        expected = {("unknown" if k is None else k): v for k, v in totals["revenue"].items()}
        assert dict(zip(labels, _decode(revenue["y"]), strict=True)) == pytest.approx(
            {k: float(v) for k, v in expected.items()}
        )
        rates = {("unknown" if k is None else k): v for k, v in totals["conversion_rate"].items()}
        assert dict(zip(_decode(conversion["x"]), _decode(conversion["y"]), strict=True)) == pytest.approx(
            rates
        )
    assert _decode(charts["price-band"][0]["x"]) == [b for b in PRICE_BANDS if b in set(ref["price_band"])]
    # the funnel: events, and distinct sessions from silver
    events, sessions = charts["funnel"]
    counts = ref["event_type"].value_counts()
    assert _decode(events["x"]) == [counts["view"], counts["cart"], counts["purchase"]]
    with_session = ref.dropna(subset=["user_session"])
    assert _decode(sessions["x"]) == [
        with_session.loc[with_session["event_type"] == t, "user_session"].nunique()
        for t in ("view", "cart", "purchase")
    ]
    # the ordered session funnels over the report's days: the shop's and the deep-dive brand's
    ordered = reference.ordered_funnel(ref.assign(event_time=pd.to_datetime(ref["event_time"])))
    deep_brand = anomaly_frame["brand"].value_counts().idxmax()
    shop_trace, brand_trace = charts["ordered-funnel"]
    steps = ["viewed_sessions", "carted_sessions", "purchased_sessions"]
    assert _decode(shop_trace["x"]) == [
        int(ordered.loc[ordered["dimension"] == "shop", s].sum()) for s in steps
    ]
    mine = ordered[(ordered["dimension"] == "brand") & (ordered["value"] == deep_brand)]
    assert brand_trace["name"] == deep_brand and _decode(brand_trace["x"]) == [
        int(mine[s].sum()) for s in steps
    ]
    # anomalies per day and type
    drops, spikes = charts["anomaly-counts"]
    per_day = anomaly_frame.groupby([anomaly_frame["window_start"].dt.date, "anomaly_type"]).size()
    days = [FIRST + timedelta(days=i) for i in range(3)]
    assert _decode(drops["y"]) == [int(per_day.get((d, "drop"), 0)) for d in days]
    assert _decode(spikes["y"]) == [int(per_day.get((d, "spike"), 0)) for d in days]
    # the deep dive: the brand with the most anomalies, its hours, band and markers with hints
    brand = anomaly_frame["brand"].value_counts().idxmax()
    assert metadata["deep_dive_brand"].value == brand
    traces = {t.get("name"): t for t in charts["brand-deep-dive"]}
    hours = reference.hourly_brand(ref)
    hours = hours[hours["brand"] == brand].sort_values("window_start")
    line = traces["session conversion"]
    assert _decode(line["x"]) == [t.strftime(TIME_FORMAT) for t in hours["window_start"]]
    assert _floats(_decode(line["y"])) == pytest.approx(
        _floats(hours["session_conversion_rate"]), nan_ok=True
    )
    low = np.array(_floats(_decode(traces["baseline band (±2σ, one hour)"]["y"])))
    high = np.array(_floats(_decode(traces[None]["y"])))  # the band's unnamed upper edge
    base = np.array(_floats(_decode(traces["baseline"]["y"])))
    assert len(low) == len(high) == len(base) == len(hours)
    assert np.all(np.isnan(low) | (low <= high))
    banded = ~np.isnan(low)
    # an hour without viewing sessions has no rate to bound; every other hour with a baseline
    # has a band, and the baseline is inside it
    no_sessions = hours["view_sessions"].to_numpy() == 0
    assert np.all(banded | no_sessions | np.isnan(base))
    known = ~np.isnan(base) & banded
    assert known.any()
    assert np.all((low[known] <= base[known] + 1e-12) & (base[known] <= high[known] + 1e-12))
    marks = anomaly_frame[anomaly_frame["brand"] == brand]
    marked = _decode(traces["drops"]["x"]) + _decode(traces.get("spikes", {"x": []})["x"])
    assert sorted(marked) == sorted(t.strftime(TIME_FORMAT) for t in marks["window_start"])
    assert "price_band=&lt;10" in json.dumps(traces["drops"]["text"])


# -- the dashboard in a real browser ---------------------------------------------------------
def _chromium() -> str:
    """Debian's chromium: found, or installed when this test may (root with apt-get), else skip."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    if (
        os.environ.get("FUNNELPULSE_INSTALL_BROWSER", "1") != "0"
        and os.geteuid() == 0
        and shutil.which("apt-get")
    ):
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, timeout=600, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=False)
            subprocess.run(install, capture_output=True, timeout=600, check=False)
        if found := shutil.which("chromium"):
            return found
    pytest.skip(
        "no Chromium: install Debian's package (`apt-get install chromium`) to run the browser test "
        "(it installs it itself when run as root with apt-get; FUNNELPULSE_INSTALL_BROWSER=0 stops that)"
    )


DASHBOARD_TOKEN = "dashboard-test-token"


def _get_guarded(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served_url(served_lake, tmp_path_factory):
    """`funnelpulse serve`'s app under uvicorn on a free loopback port, with an access token."""
    import uvicorn

    store = LakeStore(str(served_lake), mode="replica", database=tmp_path_factory.mktemp("web") / "r.duckdb")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, refresh_seconds=2, access_token=DASHBOARD_TOKEN),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.mark.spark_mode_independent  # DuckDB serves what Spark wrote
def test_dashboard_renders_live_funnel_and_incidents_in_chromium(served_url, tmp_path, top_brands):
    browser = _chromium()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--window-size=1400,1600",
    ]
    # opened once with the token, as an operator's link does; the page and its requests then
    # carry it in a cookie
    url = f"{served_url}/?brand={top_brands[0]}&token={DASHBOARD_TOKEN}"
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    live = _get_guarded(f"{served_url}/api/live")
    newest = live["hours"][-1]
    assert 'id="live-funnel" data-ready="true"' in dom, dom[:2000]
    cards = re.search(r'id="live-cards">(.*?)</div></div></div>', dom, re.DOTALL).group(0)
    assert f"{newest['views']:,}" in cards and f"{newest['purchases']:,}" in cards
    assert 'class="main-svg"' in dom  # plotly drew the charts
    # the open hour, provisional, with the API's numbers (the stream left hours open)
    assert live["open"]["hours"], live["open"]
    open_hour = live["open"]["hours"][-1]
    assert 'id="live-open" data-ready="true"' in dom
    open_cards = re.search(r'id="open-cards">(.*?)</div></div></div>', dom, re.DOTALL).group(0)
    assert f"{open_hour['views']:,}" in open_cards and f"{open_hour['purchases']:,}" in open_cards
    assert "provisional" in dom
    # the ordered session funnel, the shop's steps as the API gives them
    ordered = _get_guarded(f"{served_url}/api/funnel/ordered")
    assert 'id="ordered-funnel" data-ready="true"' in dom
    table = re.search(r'id="ordered-table">(.*?)</table>', dom, re.DOTALL).group(1)
    for column in ("viewed_sessions", "carted_sessions", "purchased_sessions", "bought_outside_path"):
        assert f">{ordered[column]:,}<" in table, column
    assert "bought outside that path" in table
    assert 'id="incidents" data-ready="true"' in dom
    assert dom.count('<tr class="incident">') == 6
    assert "6 in all" in dom
    # the trend of the chosen brand, with its three anomalies marked
    assert 'id="brand-trend" data-ready="true"' in dom and "3 anomalies" in dom
    shot = tmp_path / "dashboard.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=False
    )
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("FUNNELPULSE_DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, target)
