"""JSON out of DuckDB for the web service and the report: rows rendered as JSON inside DuckDB
(timestamps ISO-8601 UTC, dates YYYY-MM-DD, money with two decimals, NULL as null), pages with
their totals, and the errors a caller can act on. No domain knowledge: the SQL comes from
queries.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import duckdb

MAX_PAGE = 5_000
# far beyond any data, well inside DuckDB's 64-bit integers: a hostile offset is a 4xx, not a 500
MAX_OFFSET = 1_000_000_000
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


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
                f"strftime(\"{name}\", '{TIME_FORMAT}')"
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


def utc_now() -> datetime:
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


def paged(con, sql: str, params: list[Any], order_by: str, limit: int, offset: int) -> Page:
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
