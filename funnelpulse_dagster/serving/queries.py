"""The SQL behind the web service and the report, over a `LakeStore` connection.

Every function takes its inputs as query parameters (never formatted into the SQL), filters on
the partition column first so DuckDB prunes, pages in SQL, and returns plain JSON-ready values:
timestamps as ISO-8601 UTC (`2019-10-01T13:00:00Z`), dates as `YYYY-MM-DD`, money as numbers
with two decimals, NULL as null. Bad input raises `QueryError` with a message for the caller.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from funnelpulse_dagster.rules import EVENT_COUNTS, FUNNEL_RATES, ORDERED_RATES, REVENUE, SEVERITIES, rate_of
from funnelpulse_dagster.serving.jsonrows import (
    MAX_PAGE,
    TIME_FORMAT,
    Page,
    QueryError,
    as_utc,
    paged,
    rows,
    rows_json,
    utc_now,
)
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_DAILY_BRAND,
    GOLD_FUNNEL_DAILY_CATEGORY,
    GOLD_FUNNEL_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_PRICE_BAND,
    GOLD_SESSION_FUNNEL_DAILY,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    LIVE_MINUTE_FUNNEL,
    LIVE_OPEN_HOURLY_BRAND,
    ORDERED_DIMENSIONS,
    SHOP_DIMENSION,
    SHOP_SCOPE,
    Table,
)

# Bounds on what a request may ask for: far beyond any data, well inside what date arithmetic
# and DuckDB's timestamps can hold, so a hostile value is a 4xx, never a 500 (pages: jsonrows).
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)
ANOMALY_TYPES = ("drop", "spike")
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
    return paged(con, sql, params, order_by, limit, offset), start, end


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
    return paged(con, sql, params, "revenue DESC, value NULLS LAST", limit, offset), start, end


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
        r.name: rate_of(totals[r.numerator], totals[r.denominator])
        for r in FUNNEL_RATES
        if r.denominator in totals
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
        "window_start, window_end, brand, anomaly_type, severity, score, evidence_hours, detectable_at, views, purchases, "
        "conversion_rate, expected_conversion_rate, view_sessions, purchase_sessions, session_conversion_rate, "
        "expected_session_conversion_rate, expected_purchase_sessions, z_hour, top_hint, root_cause_hints, source"
    )
    sql = f'SELECT {columns} FROM "{GOLD_ANOMALIES_HOURLY_BRAND.name}" WHERE {" AND ".join(where)}'
    # a brand-hour is judged once per source, so this order is total
    return paged(con, sql, params, "window_start DESC, score DESC, brand, source", limit, offset)


def _hours_summed(con, table: str, where: str, params: list[Any]) -> list[dict[str, Any]]:
    """The hours of `table` matching `where`, brands summed, rates recomputed from the sums."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in ADDITIVE)
    return rows(
        con,
        f'SELECT *, {_rates()} FROM (SELECT window_start, window_end, {sums} FROM "{table}" '
        f"WHERE {where} GROUP BY window_start, window_end)",
        params,
        order_by="window_start",
    )


def _top_brands(con, table: str, where: str, params: list[Any], top: int) -> list[dict[str, Any]]:
    """The `top` brand rows of `table` matching `where` (one hour) by views."""
    return rows(
        con,
        f'SELECT brand, views, carts, purchases, revenue, conversion_rate FROM "{table}" '
        f"WHERE {where} ORDER BY views DESC, brand NULLS LAST LIMIT ?",
        [*params, top],
        order_by="views DESC, brand NULLS LAST",
    )


def live_funnel(con, hours: int = 12, brand: str | None = None, top: int = 10) -> dict[str, Any]:
    """The streaming gold's last `hours` closed hours (all brands summed, or one brand), the
    brands of the newest closed hour by views, and the provisional open state (`open`)."""
    if not 1 <= hours <= 24 * 14:
        raise QueryError(f"hours must be between 1 and {24 * 14}, got {hours}")
    table = GOLD_STREAM_FUNNEL_HOURLY_BRAND.name
    latest = con.execute(f'SELECT max(window_start), max(window_date) FROM "{table}"').fetchone()
    if latest[0] is None:
        closed = {"latest_window_start": None, "hours": [], "top_brands": [], "lag_seconds": None}
        return {**closed, "open": open_funnel(con, None, brand, top)}
    newest, newest_day = latest
    first = newest - timedelta(hours=hours - 1)
    brand_clause, params = "", [first.date(), newest_day, first]
    if brand is not None:
        brand_clause = " AND brand = ?"
        params.append(brand)
    hourly = _hours_summed(
        con, table, f"window_date BETWEEN ? AND ? AND window_start >= ?{brand_clause}", params
    )
    top_brands = _top_brands(con, table, "window_date = ? AND window_start = ?", [newest_day, newest], top)
    window_end = newest + timedelta(hours=1)
    return {
        "latest_window_start": newest.strftime(TIME_FORMAT),
        # how far the newest closed hour is behind the clock (large when replaying old data)
        "lag_seconds": round((utc_now() - window_end).total_seconds()),
        "hours": hourly,
        "top_brands": top_brands,
        "open": open_funnel(con, window_end, brand, top),
    }


ORDERED_COUNTS = (
    "viewed_sessions",
    "carted_sessions",
    "purchased_sessions",
    "bought_sessions",
    "dropped_after_view",
    "dropped_after_cart",
)


def ordered_funnel(
    con, dimension: str, value: str | None, start: date | None, end: date | None
) -> dict[str, Any]:
    """The ordered session funnel of the shop (or one brand / category root / price band) over
    [start, end] (default: the table's last day), beside the same weekdays one week earlier, with
    the change per step; the days themselves carry the time to convert (medians and 90th
    percentiles do not add up over days, so a range has none)."""
    if dimension not in ORDERED_DIMENSIONS:
        raise QueryError(f"dimension must be one of {', '.join(ORDERED_DIMENSIONS)}, got {dimension!r}")
    if dimension == SHOP_DIMENSION:
        value = None
    elif value is None:
        raise QueryError(f"value is required for dimension {dimension!r} (a {dimension} to show)")
    start, end = date_range(con, GOLD_SESSION_FUNNEL_DAILY, start, end, 1)
    table = GOLD_SESSION_FUNNEL_DAILY.name
    where = 'WHERE session_date BETWEEN ? AND ? AND dimension = ? AND "value" IS NOT DISTINCT FROM ?'

    def totals(first: date, last: date) -> dict[str, Any]:
        sums = ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in ORDERED_COUNTS)
        [row] = rows(
            con, f'SELECT {sums} FROM "{table}" {where}', [first, last, dimension, value], order_by="1"
        )
        rates = {r.name: rate_of(row[r.numerator], row[r.denominator]) for r in ORDERED_RATES}
        # sessions that bought such a product, but not after a view and a cart in the session
        outside = row["bought_sessions"] - row["purchased_sessions"]
        return {
            "start": first.isoformat(),
            "end": last.isoformat(),
            **row,
            **rates,
            "bought_outside_path": outside,
        }

    current = totals(start, end)
    previous = totals(start - timedelta(days=7), end - timedelta(days=7))
    change = {}
    for column in (*ORDERED_COUNTS, "bought_outside_path", *(r.name for r in ORDERED_RATES)):
        now, then = current[column], previous[column]
        if now is None or then is None:
            change[column] = {"absolute": None, "relative": None}
        else:
            change[column] = {"absolute": now - then, "relative": (now - then) / then if then else None}
    days = rows(
        con,
        f'SELECT * EXCLUDE (dimension, "value") FROM "{table}" {where}',
        [start, end, dimension, value],
        order_by="session_date",
    )
    return {
        "dimension": dimension,
        "value": value,
        **current,
        "previous_week": previous,
        "change": change,
        "days": days,
    }


MINUTES_SHOWN = 60


def open_funnel(con, closed_end: datetime | None, brand: str | None, top: int) -> dict[str, Any]:
    """The newest open state (transforms/live.py): the hours after the last closed one, summed
    over brands (or one brand), the newest open hour's top brands, and the last minute windows
    of the shop (or of the brand, when it is among the state's top brands). Provisional: an open
    hour's numbers change until the watermark closes it."""
    hourly_table, minute_table = LIVE_OPEN_HOURLY_BRAND.name, LIVE_MINUTE_FUNNEL.name
    # one version is the whole state: the newest one whose hours and minutes are both there (the
    # publisher writes the minutes last; the store copies each table on its own), never a mix
    version, as_of = con.execute(
        f'WITH complete AS (SELECT max(version) AS v FROM "{hourly_table}" '
        f'WHERE version IN (SELECT version FROM "{minute_table}")) '
        f'SELECT max(version), max(as_of) FROM "{hourly_table}" WHERE version = (SELECT v FROM complete)'
    ).fetchone()
    if version is None:
        return {"provisional": True, "as_of": None, "hours": [], "top_brands": [], "minutes": []}
    after = "" if closed_end is None else " AND window_start >= ?"
    params: list[Any] = [version] + ([] if closed_end is None else [closed_end])
    brand_clause = ""
    if brand is not None:
        brand_clause, params = " AND brand = ?", [*params, brand]
    hours = _hours_summed(con, hourly_table, f"version = ?{after}{brand_clause}", params)
    newest_open = (
        f'version = ? AND window_start = (SELECT max(window_start) FROM "{hourly_table}" WHERE version = ?)'
    )
    top_brands = _top_brands(con, hourly_table, newest_open, [version, version], top)
    minutes = rows(
        con,
        f"SELECT window_start, window_end, scope, views, carts, purchases, revenue, view_sessions, "
        f'purchase_sessions, conversion_rate, session_conversion_rate FROM "{minute_table}" '
        f"WHERE version = ? AND scope = ? AND window_start >= ? - INTERVAL {MINUTES_SHOWN} MINUTE",
        [version, SHOP_SCOPE if brand is None else brand, as_of],
        order_by="window_start",
    )
    return {
        "provisional": True,
        "as_of": as_utc(as_of).strftime(TIME_FORMAT) if as_of else None,
        "state_version": version,
        "hours": hours,
        "top_brands": top_brands,
        "minutes": minutes,
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
