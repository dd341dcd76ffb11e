"""An independent implementation of the contracts' rules in plain Python and pandas.

Tests compare the Spark pipeline with this, never with its own output. It is written from
docs/contracts.md, shares no code with funnelpulse_dagster, and is only meant for small data.
"""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import pandas as pd
from pyspark.sql.types import DateType, LongType, StructType, TimestampType

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
TYPES = {"view", "cart", "remove_from_cart", "purchase"}


def _time(text: str) -> datetime | None:
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S UTC",):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    if text.endswith("Z") or text[-6:-5] in ("+", "-"):
        try:
            return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
        except ValueError:
            return None
    return None


def _int(text: str) -> tuple[bool, int | None]:
    text = text.strip()
    if text == "":
        return True, None
    try:
        return True, int(text)
    except ValueError:
        return False, None


def _price(text: str) -> tuple[bool, Decimal | None]:
    text = text.strip()
    if text == "":
        return True, None
    try:
        return True, Decimal(text).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return False, None


def _blank(text: str) -> str | None:
    return None if text.strip() == "" else text


def _read_lines(path: Path) -> list[str]:
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    text = text.removeprefix("\ufeff")
    return [line.removesuffix("\r") for line in text.split("\n")]


def _prefix_date(line: str) -> date | None:
    try:
        return date.fromisoformat(line[:10]) if line[4:5] == "-" else None
    except ValueError:
        return None


def parse_files(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bronze rows, quarantined lines) the docs call for, from raw export files.

    Columns are found by the header's names (any order, extra columns ignored); a file without
    a header is in the export's order. A line's day is the date of its event_time, else the date
    it starts with, else the earliest such day of its file (docs/tables.md)."""
    good, bad = [], []
    for path in paths:
        raw_lines = _read_lines(path)
        nonblank = [x for x in raw_lines if x.strip(" ")]
        names = [n.strip().strip('"').lower() for n in next(csv.reader([nonblank[0]]))] if nonblank else []
        if "event_time" in names:
            header = nonblank[0].strip(" ")
            order = HEADER.split(",")
            positions = [names.index(c) for c in order]
            width = len(names)
        else:
            header, positions, width = HEADER, list(range(9)), 9
        records = []
        for line in raw_lines:
            if line.strip(" ") in ("", HEADER, header):
                continue
            raw_fields = next(csv.reader([line]))
            time_text = raw_fields[positions[0]] if positions[0] < len(raw_fields) else ""
            ts = _time(time_text)
            records.append((line, raw_fields, ts, ts.date() if ts else _prefix_date(line)))
        days = [own for *_, own in records if own is not None]
        anchor = min(days) if days else None
        for line, raw_fields, ts, own in records:
            reason = None
            if len(raw_fields) != width:
                reason = f"expected {width} fields, found {len(raw_fields)}"
                ts = None
                fields = []
            else:
                fields = [raw_fields[p] for p in positions]
                ok_pid, pid = _int(fields[2])
                ok_cid, cid = _int(fields[3])
                ok_price, price = _price(fields[6])
                ok_uid, uid = _int(fields[7])
                if fields[0].strip() == "":
                    reason = "missing event_time"
                elif ts is None:
                    reason = "unparseable event_time"
                elif not ok_pid:
                    reason = "non-integer product_id"
                elif not ok_cid:
                    reason = "non-integer category_id"
                elif not ok_price:
                    reason = "non-numeric price"
                elif not ok_uid:
                    reason = "non-integer user_id"
            owner = own or anchor
            if reason is None:
                good.append(
                    {
                        "event_time": ts,
                        "event_type": _blank(fields[1].strip()),
                        "product_id": pid,
                        "category_id": cid,
                        "category_code": _blank(fields[4]),
                        "brand": _blank(fields[5]),
                        "price": price,
                        "user_id": uid,
                        "user_session": _blank(fields[8]),
                        "event_date": owner,
                    }
                )
            else:
                bad.append({"raw_line": line, "reason": reason, "ingest_date": owner})
    return pd.DataFrame(good), pd.DataFrame(bad, columns=["raw_line", "reason", "ingest_date"])


def _norm(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    value = str(value).strip().lower()
    return value or None


def _band(price: Decimal) -> str:
    if price < 10:
        return "<10"
    if price < 30:
        return "10-30"
    if price < 60:
        return "30-60"
    return "60+"


def silver(bronze: pd.DataFrame) -> pd.DataFrame:
    rows = []
    seen = set()
    for r in bronze.sort_values(["event_time", "price"]).to_dict("records"):
        if r["event_time"] is None or r["event_type"] not in TYPES:
            continue
        if r["price"] is None or pd.isna(r["price"]) or r["price"] <= 0:
            continue
        key = (r["event_time"], r["user_id"], r["user_session"], r["product_id"], r["event_type"])
        if key in seen:
            continue
        seen.add(key)
        code = _norm(r["category_code"])
        rows.append(
            {
                **r,
                "brand_norm": _norm(r["brand"]),
                "category_code_norm": code,
                "category_root": code.split(".")[0] if code else None,
                "price_band": _band(r["price"]),
            }
        )
    return pd.DataFrame(rows)


def _funnel(silver_events: pd.DataFrame, grain_of) -> pd.DataFrame:
    """Metrics per grain; `grain_of(row)` returns the grain as a dict of column -> value."""
    names = {
        "view": "views",
        "cart": "carts",
        "remove_from_cart": "remove_from_carts",
        "purchase": "purchases",
    }
    groups: dict[tuple, dict] = {}
    for r in silver_events.to_dict("records"):
        grain = grain_of(r)
        key = tuple(grain.values())
        g = groups.setdefault(
            key,
            {
                **grain,
                "views": 0,
                "carts": 0,
                "remove_from_carts": 0,
                "purchases": 0,
                "revenue": Decimal("0.00"),
                "_sessions": {},
                "_users": {},
            },
        )
        g[names[r["event_type"]]] += 1
        if r["event_type"] == "purchase":
            g["revenue"] += r["price"]
        for actor, bucket in (("user_session", "_sessions"), ("user_id", "_users")):
            if r[actor] is not None and not (isinstance(r[actor], float) and pd.isna(r[actor])):
                g[bucket].setdefault(r[actor], set()).add(r["event_type"])
    out = []
    for g in groups.values():
        sessions, users = g.pop("_sessions"), g.pop("_users")
        for step in ("view", "cart", "purchase"):
            g[f"{step}_sessions"] = sum(step in types for types in sessions.values())
            g[f"{step}_users"] = sum(step in types for types in users.values())
        g["view_to_cart_rate"] = g["carts"] / g["views"] if g["views"] else None
        g["cart_to_purchase_rate"] = g["purchases"] / g["carts"] if g["carts"] else None
        g["conversion_rate"] = g["purchases"] / g["views"] if g["views"] else None
        g["session_conversion_rate"] = (
            g["purchase_sessions"] / g["view_sessions"] if g["view_sessions"] else None
        )
        out.append(g)
    return pd.DataFrame(out)


def _hour(r) -> dict:
    start = r["event_time"].replace(minute=0, second=0, microsecond=0)
    return {"window_start": start, "window_end": start + timedelta(hours=1), "window_date": start.date()}


def hourly_brand(silver_events: pd.DataFrame) -> pd.DataFrame:
    return _funnel(silver_events, lambda r: {**_hour(r), "brand": r["brand_norm"]})


def daily_brand(silver_events: pd.DataFrame) -> pd.DataFrame:
    return _funnel(silver_events, lambda r: {"date": r["event_time"].date(), "brand": r["brand_norm"]})


def daily_category(silver_events: pd.DataFrame) -> pd.DataFrame:
    return _funnel(
        silver_events, lambda r: {"date": r["event_time"].date(), "category_root": r["category_root"]}
    )


def hourly_price_band(silver_events: pd.DataFrame) -> pd.DataFrame:
    return _funnel(silver_events, lambda r: {**_hour(r), "price_band": r["price_band"]})


# -- handing results to Spark tests ---------------------------------------------------------
def _plain(value, dtype):
    """A pandas cell as the plain Python value Spark's createDataFrame expects."""
    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    if isinstance(dtype, LongType):
        return int(value)
    if isinstance(dtype, TimestampType):
        return pd.Timestamp(value).to_pydatetime()
    if isinstance(dtype, DateType):
        return pd.Timestamp(value).date()
    return value


def as_spark_frame(spark, pdf: pd.DataFrame, table_schema, columns):
    """The reference's pandas result as a Spark frame with the table's declared types."""
    schema = StructType([f for f in table_schema.fields if f.name in columns])
    rows = [
        tuple(_plain(record[f.name], f.dataType) for f in schema.fields) for record in pdf.to_dict("records")
    ]
    return spark.createDataFrame(rows, schema)


def ordered_funnel(silver_events: pd.DataFrame, window_minutes: int | None = None) -> pd.DataFrame:
    """The ordered session funnel, session by session in plain Python: per session, its day (the
    date of its first event) and, for the shop and each brand / category root / price band value of
    its products: the first view, the first cart at or after it, the first purchase at or after
    that cart (all within `window_minutes` of the view when given), and whether it bought such a
    product at all, in any order (`bought_sessions`: a value bought without a view has a row)."""
    import numpy as np

    limit = timedelta(minutes=window_minutes) if window_minutes is not None else None
    per_group: dict[tuple, list[tuple]] = {}
    events = silver_events[silver_events["user_session"].notna()]
    for session, rows in events.groupby("user_session"):
        rows = rows.sort_values("event_time")
        day = rows["event_time"].min().date()
        for dimension, column in (("shop", None), ("brand", "brand_norm"), ("category_root", "category_root"), ("price_band", "price_band")):
            values = [None] if column is None else list(dict.fromkeys(rows[column].tolist()))
            for value in values:
                mine = rows if column is None else rows[rows[column].isna()] if value is None else rows[rows[column] == value]
                views = mine[mine["event_type"] == "view"]["event_time"]
                bought_any = bool((mine["event_type"] == "purchase").any())
                if views.empty:
                    if bought_any:
                        per_group.setdefault((day, dimension, value), []).append((None, None, None, True))
                    continue
                t_view = views.min()
                end = t_view + limit if limit is not None else None
                carts = [t for t in mine[mine["event_type"] == "cart"]["event_time"] if t >= t_view and (end is None or t <= end)]
                t_cart = min(carts) if carts else None
                buys = [] if t_cart is None else [
                    t for t in mine[mine["event_type"] == "purchase"]["event_time"] if t >= t_cart and (end is None or t <= end)
                ]
                t_buy = min(buys) if buys else None
                per_group.setdefault((day, dimension, value), []).append((t_view, t_cart, t_buy, bought_any))
    out = []
    for (day, dimension, value), sessions in per_group.items():
        def seconds(pairs):
            return [(b - a).total_seconds() for a, b in pairs if a is not None and b is not None]

        v2c = seconds([(v, c) for v, c, _, _ in sessions])
        c2p = seconds([(c, p) for _, c, p, _ in sessions])
        v2p = seconds([(v, p) for v, _, p, _ in sessions])
        q = lambda xs, p: float(np.percentile(xs, p)) if xs else None
        viewed = sum(v is not None for v, _, _, _ in sessions)
        carted, bought = len(v2c), len(v2p)
        bought_any = sum(b for _, _, _, b in sessions)
        out.append({
            "session_date": day, "dimension": dimension, "value": value,
            "viewed_sessions": viewed, "carted_sessions": carted, "purchased_sessions": bought,
            "bought_sessions": bought_any,
            "dropped_after_view": viewed - carted, "dropped_after_cart": carted - bought,
            "view_to_cart_rate": carted / viewed if viewed else None,
            "cart_to_purchase_rate": bought / carted if carted else None,
            "conversion_rate": bought / viewed if viewed else None,
            "median_seconds_view_to_cart": q(v2c, 50), "p90_seconds_view_to_cart": q(v2c, 90),
            "median_seconds_cart_to_purchase": q(c2p, 50), "p90_seconds_cart_to_purchase": q(c2p, 90),
            "median_seconds_view_to_purchase": q(v2p, 50), "p90_seconds_view_to_purchase": q(v2p, 90),
        })  # fmt: skip
    return pd.DataFrame(out)
