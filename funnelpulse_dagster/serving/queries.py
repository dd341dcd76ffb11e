"""The SQL behind the web service and the report, over a `LakeStore` connection.

Every function takes its inputs as query parameters (never formatted into the SQL), filters on
the partition column first so DuckDB prunes, pages in SQL, and returns plain JSON-ready values:
timestamps as ISO-8601 UTC (`2019-10-01T13:00:00Z`), dates as `YYYY-MM-DD`, money as numbers
with two decimals, NULL as null. Bad input raises `QueryError` with a message for the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import duckdb

from funnelpulse_dagster.rules import EVENT_COUNTS, FUNNEL_RATES, REVENUE, rate_of
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    Table,
)

MAX_PAGE = 5_000
# Bounds on what a request may ask for: far beyond any data, well inside what date arithmetic,
# DuckDB's 64-bit integers and timestamps can hold, so a hostile value is a 4xx, never a 500.
MAX_OFFSET = 1_000_000_000
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)
ANOMALY_TYPES = ("drop", "spike")
SEVERITIES = ("low", "medium", "high")
# dimension name in the API → (table, column)
HOURLY_DIMENSIONS: dict[str, tuple[Table, str]] = {
    "brand": (GOLD_FUNNEL_HOURLY_BRAND, "brand"),
    "price_band": (GOLD_FUNNEL_HOURLY_PRICE_BAND, "price_band"),
}
DAILY_DIMENSIONS: dict[str, tuple[Table, str]] = {
    "brand": (GOLD_FUNNEL_DAILY_BRAND, "brand"),
    "category": (GOLD_FUNNEL_DAILY_CATEGORY, "category_root"),
}
# totals over a date range: daily tables where they exist, price bands from their hourly table
BREAKDOWN_DIMENSIONS: dict[str, tuple[Table, str]] = {
    **DAILY_DIMENSIONS,
    "price_band": (GOLD_FUNNEL_HOURLY_PRICE_BAND, "price_band"),
}
# event counts add up across rows; rates are recomputed from the sums
ADDITIVE = (
    *EVENT_COUNTS,
    REVENUE,
    "view_sessions",
    "purchase_sessions",
)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class QueryError(ValueError):
    """A request the data cannot answer as asked (the service turns it into a 4xx)."""


@dataclass(frozen=True)
class Page:
    """One page of rows, kept as the JSON text DuckDB wrote (the service sends it unchanged)."""

    items_json: str
    total: int
    limit: int
    offset: int
    count: int

    @cached_property
    def items(self) -> list[dict[str, Any]]:
        return json.loads(self.items_json)

    @property
    def next_offset(self) -> int | None:
        following = self.offset + self.count
        return following if following < self.total else None

    def as_json(self, **extra: Any) -> str:
        """The response body: `extra` fields, then items, total, limit, offset, next_offset."""
        head = json.dumps(extra)[:-1] + (", " if extra else "")
        tail = json.dumps(
            {"total": self.total, "limit": self.limit, "offset": self.offset, "next_offset": self.next_offset}
        )[1:]
        return f'{head}"items": {self.items_json}, {tail}'


# struct_pack arguments per SQL text. A query's column types follow from its text alone: every
# served table and view has the types declared in tables.py (the store casts to them), so the
# answer never changes within a process, and skipping the describe query saves ~10% of a request.
_JSON_FIELDS: dict[str, str] = {}
_JSON_FIELDS_MAX = 512


def _json_fields(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> str:
    """`struct_pack` arguments for the columns of `sql`, each as the API writes it: timestamps
    as ISO-8601 UTC text, everything else as DuckDB's `to_json` writes it (dates as
    `YYYY-MM-DD`, decimals as numbers)."""
    fields = _JSON_FIELDS.get(sql)
    if fields is None:
        described = con.execute(f"SELECT * FROM ({sql}) LIMIT 0", params).description
        fields = ", ".join(
            f'"{name}" := '
            + (
                f"strftime(\"{name}\", '{_TIME_FORMAT}')"
                if str(dtype).startswith("TIMESTAMP")
                else f'"{name}"'
            )
            for name, dtype, *_ in described
        )
        if len(_JSON_FIELDS) >= _JSON_FIELDS_MAX:  # only IN-lists of varying length make new texts
            _JSON_FIELDS.clear()
        _JSON_FIELDS[sql] = fields
    return fields


def _valid_json(text: str | None) -> str:
    """DuckDB writes NaN and ±Infinity as bare tokens, which JSON does not have; they become
    null. The tables' arithmetic never makes them (rates divide by NULLIF(x, 0)), so this is a
    rare slow path behind a cheap test."""
    if text is None:
        return "[]"
    if "NaN" in text or "Infinity" in text:
        return json.dumps(json.loads(text, parse_constant=lambda _: None))
    return text


def _json_array(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], order_by: str) -> str:
    """The aggregate that writes the rows of `sql`, ordered by `order_by`, as one JSON array
    (NULL over no rows). Turning thousands of values into Python objects and back into JSON
    under the GIL costs several times the query; DuckDB writes the text without the GIL."""
    return f"to_json(list(struct_pack({_json_fields(con, sql, params)}) ORDER BY {order_by}))"


def rows_json(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], order_by: str) -> str:
    """The rows of `sql` ordered by `order_by`, as a JSON array built inside DuckDB."""
    [text] = con.execute(f"SELECT {_json_array(con, sql, params, order_by)} FROM ({sql})", params).fetchone()
    return _valid_json(text)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], order_by: str) -> list[dict[str, Any]]:
    """The rows of `sql` as dicts of JSON values (the same text the API sends, decoded)."""
    return json.loads(rows_json(con, sql, params, order_by))


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def as_utc(moment: datetime | None) -> datetime | None:
    """A naive UTC datetime (the tables' form); an aware one is converted first."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise QueryError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise QueryError(f"offset must be 0 or more, got {offset}")


def _paged(con, sql: str, params: list[Any], order_by: str, limit: int, offset: int) -> Page:
    """`sql` ordered by `order_by` (a total order, so pages never overlap) and paged. A page
    shorter than `limit` tells the total by itself; a full page (or one past the end) asks a
    count query, which is cheaper than a window count over every row of every page."""
    _check_page(limit, offset)
    text, count = con.execute(
        f"SELECT {_json_array(con, sql, params, order_by)}, count(*) "
        f"FROM (SELECT * FROM ({sql}) ORDER BY {order_by} LIMIT ? OFFSET ?)",
        [*params, limit, offset],
    ).fetchone()
    if 0 < count < limit or (count == 0 and offset == 0):
        total = offset + count
    else:
        total = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
    return Page(_valid_json(text), total, limit, offset, count)


def _rates(prefix: str = "") -> str:
    return ", ".join(
        f"{prefix}{r.numerator} / NULLIF({prefix}{r.denominator}, 0) AS {r.name}" for r in FUNNEL_RATES
    )


def partition_bounds(con, table: Table) -> tuple[date, date] | None:
    first, last = con.execute(
        f'SELECT min("{table.partition_column}"), max("{table.partition_column}") FROM "{table.name}"'
    ).fetchone()
    return (first, last) if first is not None else None


def date_range(
    con, table: Table, start: date | None, end: date | None, default_days: int
) -> tuple[date, date]:
    """[start, end] with defaults: end = the table's last day, start = end − default_days + 1
    (not before the table's first day)."""
    if start and end and end < start:
        raise QueryError(f"end ({end}) is before start ({start})")
    bounds = partition_bounds(con, table) if end is None or start is None else None
    if end is None:
        end = bounds[1] if bounds else date.today()
        if start is not None and end < start:
            end = start
    if start is None:
        start = end - timedelta(days=default_days - 1)
        if bounds and bounds[0] > start:
            start = min(bounds[0], end)
    return start, end


def _dimension(dimensions: dict[str, tuple[Table, str]], name: str) -> tuple[Table, str]:
    if name not in dimensions:
        raise QueryError(f"dimension must be one of {sorted(dimensions)}, got {name!r}")
    return dimensions[name]


def funnel_rows(
    con,
    dimensions: dict[str, tuple[Table, str]],
    dimension: str,
    values: list[str] | None,
    start: date | None,
    end: date | None,
    limit: int = 1_000,
    offset: int = 0,
    default_days: int = 7,
) -> tuple[Page, date, date]:
    """Rows of an hourly or daily funnel table, oldest first, for some values of the dimension
    (all when `values` is empty)."""
    table, column = _dimension(dimensions, dimension)
    start, end = date_range(con, table, start, end, default_days)
    part = table.partition_column
    time_column = "window_start" if "window_start" in table.schema.fieldNames() else part
    where = [f'"{part}" BETWEEN ? AND ?']
    params: list[Any] = [start, end]
    if values:
        where.append(f'"{column}" IN ({", ".join("?" for _ in values)})')
        params.extend(values)
    sql = f'SELECT * EXCLUDE ("{part}"), "{part}" FROM "{table.name}" WHERE {" AND ".join(where)}'
    order_by = f'"{time_column}", "{column}" NULLS FIRST'
    return _paged(con, sql, params, order_by, limit, offset), start, end


def totals_by(
    con,
    dimensions: dict[str, tuple[Table, str]],
    dimension: str,
    start: date | None,
    end: date | None,
    limit: int = 100,
    offset: int = 0,
    search: str | None = None,
    default_days: int = 30,
) -> tuple[Page, date, date]:
    """One row per value of the dimension over [start, end], biggest revenue first, with the
    funnel's sums and the rates recomputed from them."""
    table, column = _dimension(dimensions, dimension)
    start, end = date_range(con, table, start, end, default_days)
    params: list[Any] = [start, end]
    search_clause = ""
    if search:
        search_clause = f' AND "{column}" ILIKE ?'
        params.append(f"%{search}%")
    sums = ", ".join(f"sum({c}) AS {c}" for c in ADDITIVE)
    sql = (
        f'SELECT "{column}" AS value, {", ".join(ADDITIVE)}, {_rates()} '
        f'FROM (SELECT "{column}", {sums} FROM "{table.name}" '
        f'WHERE "{table.partition_column}" BETWEEN ? AND ?{search_clause} GROUP BY "{column}")'
    )
    return _paged(con, sql, params, "revenue DESC, value NULLS LAST", limit, offset), start, end


def funnel_totals(con, start: date | None, end: date | None) -> dict[str, Any]:
    """The whole shop's event funnel over [start, end] (every event is in exactly one brand
    row, the brand-less ones included, so the brand table's sums are the shop's)."""
    start, end = date_range(con, GOLD_FUNNEL_DAILY_BRAND, start, end, 30)
    sums = ", ".join(f"sum({c}) AS {c}" for c in (*EVENT_COUNTS, REVENUE))
    [row] = rows(
        con,
        f'SELECT {sums}, count(DISTINCT brand) AS brands FROM "{GOLD_FUNNEL_DAILY_BRAND.name}" '
        'WHERE "date" BETWEEN ? AND ?',
        [start, end],
        order_by="views",  # one row
    )
    totals = {k: (v if v is not None else 0) for k, v in row.items()}
    # the shop-wide totals have no distinct counts, so the session rate has no denominator here
    rates = {
        r.name: rate_of(totals[r.numerator], totals[r.denominator]) for r in FUNNEL_RATES if r.denominator in totals
    }
    return {"start": start.isoformat(), "end": end.isoformat(), **totals, **rates}


def daily_anomaly_counts(con, start: date, end: date) -> list[dict[str, Any]]:
    return rows(
        con,
        f'SELECT window_date AS "date", anomaly_type, count(*) AS anomalies FROM "{GOLD_ANOMALIES_HOURLY_BRAND.name}" '
        "WHERE window_date BETWEEN ? AND ? GROUP BY ALL",
        [start, end],
        order_by='"date", anomaly_type',
    )


def anomalies(
    con,
    since: datetime | None = None,
    until: datetime | None = None,
    anomaly_type: str | None = None,
    brand: str | None = None,
    severity: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page:
    """Flagged brand-hours, newest first, with their baselines and root-cause hints."""
    if anomaly_type is not None and anomaly_type not in ANOMALY_TYPES:
        raise QueryError(f"type must be one of {list(ANOMALY_TYPES)}, got {anomaly_type!r}")
    if severity is not None and severity not in SEVERITIES:
        raise QueryError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    since, until = as_utc(since), as_utc(until)
    if since and until and until < since:
        raise QueryError(f"until ({until}) is before since ({since})")
    where, params = ["TRUE"], []
    if since is not None:
        # the partition filter first, so DuckDB skips older days
        where += ["window_date >= ?", "window_start >= ?"]
        params += [since.date(), since]
    if until is not None:
        where += ["window_date <= ?", "window_start < ?"]
        params += [until.date(), until]
    for column, value in (("anomaly_type", anomaly_type), ("brand", brand), ("severity", severity)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    columns = (
        "window_start, window_end, brand, anomaly_type, severity, score, evidence_hours, views, purchases, "
        "conversion_rate, expected_conversion_rate, view_sessions, purchase_sessions, session_conversion_rate, "
        "expected_session_conversion_rate, expected_purchase_sessions, z_hour, top_hint, root_cause_hints, source"
    )
    sql = f'SELECT {columns} FROM "{GOLD_ANOMALIES_HOURLY_BRAND.name}" WHERE {" AND ".join(where)}'
    # a brand-hour is judged once per source, so this order is total
    return _paged(con, sql, params, "window_start DESC, score DESC, brand, source", limit, offset)


def live_funnel(con, hours: int = 12, brand: str | None = None, top: int = 10) -> dict[str, Any]:
    """The streaming gold's last `hours` closed hours (all brands summed, or one brand), and
    the brands of the newest hour by views. An hour appears once the watermark closes it."""
    if not 1 <= hours <= 24 * 14:
        raise QueryError(f"hours must be between 1 and {24 * 14}, got {hours}")
    table = GOLD_STREAM_FUNNEL_HOURLY_BRAND.name
    latest = con.execute(f'SELECT max(window_start), max(window_date) FROM "{table}"').fetchone()
    if latest[0] is None:
        return {"latest_window_start": None, "hours": [], "top_brands": [], "lag_seconds": None}
    newest, newest_day = latest
    first = newest - timedelta(hours=hours - 1)
    brand_clause, params = "", [first.date(), newest_day, first]
    if brand is not None:
        brand_clause = " AND brand = ?"
        params.append(brand)
    sums = ", ".join(f"sum({c}) AS {c}" for c in ADDITIVE)
    hourly = rows(
        con,
        f"SELECT *, {_rates()} FROM (SELECT window_start, window_end, {sums} "
        f'FROM "{table}" WHERE window_date BETWEEN ? AND ? AND window_start >= ?{brand_clause} '
        "GROUP BY window_start, window_end)",
        params,
        order_by="window_start",
    )
    top_brands = rows(
        con,
        f'SELECT brand, views, carts, purchases, revenue, conversion_rate FROM "{table}" '
        "WHERE window_date = ? AND window_start = ? ORDER BY views DESC, brand NULLS LAST LIMIT ?",
        [newest_day, newest, top],
        order_by="views DESC, brand NULLS LAST",
    )
    window_end = newest + timedelta(hours=1)
    return {
        "latest_window_start": newest.strftime(_TIME_FORMAT),
        # how far the newest closed hour is behind the clock (large when replaying old data)
        "lag_seconds": round((_utc_now() - window_end).total_seconds()),
        "hours": hourly,
        "top_brands": top_brands,
    }


__all__ = [
    "ANOMALY_TYPES",
    "BREAKDOWN_DIMENSIONS",
    "DAILY_DIMENSIONS",
    "HOURLY_DIMENSIONS",
    "MAX_PAGE",
    "Page",
    "QueryError",
    "anomalies",
    "as_utc",
    "daily_anomaly_counts",
    "date_range",
    "funnel_rows",
    "funnel_totals",
    "live_funnel",
    "partition_bounds",
    "rows",
    "rows_json",
    "totals_by",
]
