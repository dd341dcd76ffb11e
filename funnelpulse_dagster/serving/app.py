"""`funnelpulse serve`: a JSON API over the gold tables and the dashboard page that uses it.

Endpoints are plain `def`s: FastAPI runs them in its thread pool, and DuckDB releases the GIL
while it works, so concurrent requests use both cores. Row lists are written as JSON text by
DuckDB itself (`jsonrows.rows_json`) and sent unchanged: building a month of hourly rows as Python
objects and encoding them again cost more than the query and held the GIL while it did.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime
from importlib import resources
from typing import Annotated, Literal

from fastapi import FastAPI, Path, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer
from pydantic import AfterValidator, BeforeValidator

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.serving import jsonrows, queries
from funnelpulse_dagster.serving.jsonrows import QueryError
from funnelpulse_dagster.serving.store import SERVED_TABLES, LakeStore, Refresher

STATIC = resources.files("funnelpulse_dagster.serving") / "static"

Limit = Annotated[int, Query(ge=1, le=jsonrows.MAX_PAGE, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=jsonrows.MAX_OFFSET, description="rows to skip")]
# Dates and times are strict ISO 8601 text (no numbers read as epoch seconds), as OpenAPI says.
# A bound beyond the days any data can have (queries.FIRST_DAY … LAST_DAY) is clamped to them:
# every date the schema admits is answered, and date arithmetic never overflows.
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?")


def _text_matching(pattern: re.Pattern, expected: str):
    """A validator that admits only text in `pattern`'s form (before pydantic's own parsing)."""

    def check(value: object) -> object:
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError(f"must be {expected}")
        return value

    return check


def _clamped_day(value: date | None) -> date | None:
    return None if value is None else min(max(value, queries.FIRST_DAY), queries.LAST_DAY)


def _utc_clamped(value: datetime | None) -> datetime | None:
    """A time as naive UTC, clamped to the days a request may ask for."""
    if value is None:
        return None
    if value.date() < queries.FIRST_DAY:
        return datetime.combine(queries.FIRST_DAY, datetime.min.time())
    if value.date() > queries.LAST_DAY:
        return datetime.combine(queries.LAST_DAY, datetime.min.time())
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


IsoDay = Annotated[
    date | None,
    BeforeValidator(_text_matching(_ISO_DAY, "a date as YYYY-MM-DD")),
    AfterValidator(_clamped_day),
]
Start = Annotated[IsoDay, Query(description="first day (UTC), default: a window ending at `end`")]
End = Annotated[IsoDay, Query(description="last day (UTC), inclusive; default: the table's last day")]
UtcTime = Annotated[
    datetime | None,
    BeforeValidator(_text_matching(_ISO_TIME, "a time as ISO 8601, YYYY-MM-DD[THH:MM[:SS][Z|±HH:MM]]")),
    AfterValidator(_utc_clamped),
]


def _int_or_none(value: object) -> int | None:
    return int(value) if value not in (None, "") else None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00:01+00:01, a valid date-time with no UTC time: the earliest (or
        # latest) UTC time, which reads the tables as that bound would
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


AsOf = Annotated[
    datetime | None,
    BeforeValidator(_text_matching(_ISO_TIME, "a time as ISO 8601, YYYY-MM-DD[THH:MM[:SS][Z|±HH:MM]]")),
    AfterValidator(_utc),
    Query(
        description="read every table as it was at this time (UTC unless an offset is given): its "
        "Delta version then; default: the newest versions"
    ),
]


class PreEncodedJSONResponse(JSONResponse):
    """A JSON response whose body is already JSON text."""

    def render(self, content: str) -> bytes:
        return content.encode()


def _page(page: jsonrows.Page, **extra) -> JSONResponse:
    # the page's rows are already JSON (written by DuckDB); only the envelope is encoded here
    return PreEncodedJSONResponse(page.as_json(**extra))


# the cookie a browser keeps the access token in, once it opened the dashboard with ?token=
TOKEN_COOKIE = "funnelpulse_token"
_UNAUTHORIZED = {"description": "missing or wrong access token (when the service requires one)"}
_BAD_RANGE = {"description": "a range that ends before it starts"}


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return request.cookies.get(TOKEN_COOKIE)


def _require_token(app: FastAPI, token: str) -> None:
    """Every path, the docs and the dashboard included, answers 401 without `token`: as a
    bearer token (API clients), or as the cookie a browser got by opening `/?token=…` once
    (the dashboard's own requests then carry it)."""

    def matches(presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), token.encode())

    @app.middleware("http")
    async def access_token(request: Request, call_next):
        if matches(_presented_token(request)):
            return await call_next(request)
        if request.url.path == "/" and matches(request.query_params.get("token")):
            # the link that opens the dashboard: keep the token in a cookie, off the address bar
            # (SameSite=Lax: the link may come from an alert in another site; nothing served
            # here changes state)
            response = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            response.set_cookie(
                TOKEN_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https"
            )
            return response
        return JSONResponse(
            {"detail": "missing or wrong access token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(
    store: LakeStore, refresh_seconds: float | None = 5.0, access_token: str | None = None
) -> FastAPI:
    """The service over `store`. With `refresh_seconds`, a background thread keeps the store in
    step with the lake; the first refresh happens before the first request is served. With
    `access_token`, every request must present it (`_require_token`)."""
    refresher = Refresher(store, refresh_seconds) if refresh_seconds else None

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        store.refresh()
        if refresher:
            refresher.start()
        yield
        if refresher:
            refresher.stop()

    app = FastAPI(
        title="FunnelPulse",
        summary="Funnel metrics, the live funnel and conversion anomalies from the FunnelPulse lakehouse.",
        version="1",
        lifespan=lifespan,
        # with a token: every operation may answer 401, and OpenAPI says which scheme it wants
        # (the middleware below enforces it, on every path)
        responses={401: _UNAUTHORIZED} if access_token else None,
        dependencies=[Security(HTTPBearer(auto_error=False))] if access_token else None,
    )
    if access_token:
        _require_token(app, access_token)

    @app.exception_handler(QueryError)
    async def _bad_query(_: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/health", tags=["service"])
    def health() -> JSONResponse:
        """Each served table's partitions, rows and day range, and the last refresh."""
        age = time.time() - store.last_refresh if store.last_refresh else None
        error = refresher.last_error if refresher else None
        return JSONResponse(
            {
                "status": "degraded" if error else "ok",
                "mode": store.mode,
                "lake": store.lake_root,
                "last_refresh_age_seconds": round(age, 1) if age is not None else None,
                "refresh_error": error,
                "tables": {
                    t.name: vars(store.state[t.name]) | {"partition_column": t.partition_column}
                    for t in SERVED_TABLES
                },
            }
        )

    @app.get("/api/brands", tags=["funnel"], responses={400: _BAD_RANGE})
    def brands(
        start: Start = None,
        end: End = None,
        search: Annotated[str | None, Query(max_length=100, description="part of the brand name")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> JSONResponse:
        """Brands over a date range (default: the last 30 days), biggest revenue first."""
        page, first, last = queries.totals_by(
            store.cursor(), queries.BREAKDOWN_DIMENSIONS, "brand", start, end, limit, offset, search
        )
        return _page(page, start=first.isoformat(), end=last.isoformat())

    @app.get("/api/breakdown", tags=["funnel"], responses={400: _BAD_RANGE})
    def breakdown(
        dimension: Literal["brand", "category", "price_band"],
        start: Start = None,
        end: End = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> JSONResponse:
        """Funnel totals per brand, category root or price band over a date range."""
        page, first, last = queries.totals_by(
            store.cursor(), queries.BREAKDOWN_DIMENSIONS, dimension, start, end, limit, offset
        )
        return _page(page, dimension=dimension, start=first.isoformat(), end=last.isoformat())

    @contextmanager
    def cursor_as_of(as_of: datetime | None) -> Iterator:
        """The store's cursor, or for `as_of` a one-shot store of every table's version at that
        time (views over those versions' files; a time before a table existed reads it empty)."""
        if as_of is None:
            yield store.cursor()
            return
        try:
            then = LakeStore(store.lake_root, mode="parquet", as_of=as_of)
            then.refresh()
        except Exception as exc:
            raise QueryError(f"as_of {as_of.isoformat()}: no version of the tables then ({exc})") from exc
        try:
            yield then.cursor()
        finally:
            then.close()

    def _funnel_page(
        dimensions, dimension, value, start, end, limit, offset, default_days, as_of=None
    ) -> JSONResponse:
        with cursor_as_of(as_of) as cursor:
            return _funnel_page_on(
                cursor, dimensions, dimension, value, start, end, limit, offset, default_days
            )

    def _funnel_page_on(cursor, dimensions, dimension, value, start, end, limit, offset, default_days):
        page, first, last = queries.funnel_rows(
            cursor,
            dimensions,
            dimension,
            [value] if value else None,
            start,
            end,
            limit,
            offset,
            default_days=default_days,
        )
        return _page(page, dimension=dimension, value=value, start=first.isoformat(), end=last.isoformat())

    @app.get("/api/funnel/hourly", tags=["funnel"], responses={400: _BAD_RANGE})
    def hourly(
        dimension: Literal["brand", "price_band"] = "brand",
        value: Annotated[str | None, Query(max_length=200, description="one brand or price band")] = None,
        start: Start = None,
        end: End = None,
        limit: Limit = 1_000,
        offset: Offset = 0,
    ) -> JSONResponse:
        """Hourly funnel rows (default: the last 7 days), oldest first."""
        return _funnel_page(queries.HOURLY_DIMENSIONS, dimension, value, start, end, limit, offset, 7)

    @app.get("/api/funnel/daily", tags=["funnel"], responses={400: _BAD_RANGE})
    def daily(
        dimension: Literal["brand", "category"] = "brand",
        value: Annotated[str | None, Query(max_length=200, description="one brand or category root")] = None,
        start: Start = None,
        end: End = None,
        limit: Limit = 1_000,
        offset: Offset = 0,
        as_of: AsOf = None,
    ) -> JSONResponse:
        """Daily funnel rows (default: the last 30 days), oldest first; `as_of`: as the tables
        were then."""
        return _funnel_page(queries.DAILY_DIMENSIONS, dimension, value, start, end, limit, offset, 30, as_of)

    @app.get("/api/funnel/totals", tags=["funnel"], responses={400: _BAD_RANGE})
    def totals(start: Start = None, end: End = None, as_of: AsOf = None) -> JSONResponse:
        """The shop's event funnel over a date range (default: the last 30 days); `as_of`: as
        the tables were then."""
        with cursor_as_of(as_of) as cursor:
            return JSONResponse(queries.funnel_totals(cursor, start, end))

    @app.get(
        "/api/tables/{table}/versions", tags=["tables"], responses={404: {"description": "no such table"}}
    )
    def versions(
        table: Annotated[
            str, Path(max_length=64, description="a served table, e.g. gold_funnel_daily_brand")
        ],
        limit: Annotated[int, Query(ge=1, le=1_000, description="newest versions to list")] = 20,
    ) -> JSONResponse:
        """A table's versions (Delta commits), newest first: when, the operation, rows added
        and removed, and the run that wrote it (a Dagster run id)."""
        served = {t.name: t for t in SERVED_TABLES}
        if table not in served:
            return JSONResponse(
                {"error": f"no served table {table!r}", "tables": sorted(served)}, status_code=404
            )
        items = [
            {
                "version": snap.version,
                "committed_at": snap.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if snap.timestamp
                else None,
                "operation": snap.operation,
                "rows_added": _int_or_none(snap.metrics.get("numOutputRows")),
                "rows_removed": _int_or_none(snap.metrics.get("numDeletedRows")),
                "run_id": snap.tag,
            }
            for snap in Lake(store.lake_root).snapshots(served[table], limit)
        ]
        return JSONResponse({"table": table, "items": items})

    @app.get("/api/funnel/ordered", tags=["funnel"], responses={400: _BAD_RANGE})
    def ordered(
        dimension: Literal["shop", "brand", "category_root", "price_band"] = "shop",
        value: Annotated[
            str | None, Query(max_length=200, description="the brand, category root or band")
        ] = None,
        start: Start = None,
        end: End = None,
    ) -> JSONResponse:
        """The ordered session funnel (view, then cart, then purchase, in order within a session)
        over a date range (default: the last day), beside the same weekdays a week earlier."""
        return JSONResponse(queries.ordered_funnel(store.cursor(), dimension, value, start, end))

    @app.get("/api/live", tags=["live"])
    def live(
        hours: Annotated[int, Query(ge=1, le=24 * 14, description="closed hours to return")] = 12,
        brand: Annotated[str | None, Query(max_length=200)] = None,
    ) -> JSONResponse:
        """The live funnel from the streaming gold: its newest closed hours and top brands."""
        return JSONResponse(queries.live_funnel(store.cursor(), hours, brand))

    @app.get("/api/anomalies", tags=["anomalies"], responses={400: _BAD_RANGE})
    def anomaly_list(
        since: Annotated[UtcTime, Query(description="from this time (UTC), inclusive")] = None,
        until: Annotated[UtcTime, Query(description="to this time (UTC), exclusive")] = None,
        type: Annotated[Literal["drop", "spike"] | None, Query(description="drop or spike")] = None,
        brand: Annotated[str | None, Query(max_length=200)] = None,
        severity: Literal["low", "medium", "high"] | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> JSONResponse:
        """Conversion anomalies, newest first, with baselines and root-cause hints."""
        page = queries.anomalies(store.cursor(), since, until, type, brand, severity, limit, offset)
        return _page(page)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse((STATIC / "dashboard.html").read_text())

    @app.get("/static/dashboard.js", include_in_schema=False)
    def dashboard_js() -> Response:
        return Response((STATIC / "dashboard.js").read_text(), media_type="text/javascript")

    plotly_js: list[str] = []

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> Response:
        # served from the installed plotly package: the dashboard works without the internet
        if not plotly_js:
            from plotly.offline import get_plotlyjs

            plotly_js.append(get_plotlyjs())
        return Response(
            plotly_js[0], media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    return app
