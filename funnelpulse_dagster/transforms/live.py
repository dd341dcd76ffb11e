"""The open state of the live funnel, kept incrementally: the hours the closed table does not hold yet.

The closed hourly table only gets an hour once the watermark passes its end (two hours late by
design: late events must still count). Watching needs the hours still open, as of the newest
event, within seconds, whatever the size of the open hour. So the open state has a streaming
query of its own, whose work per micro-batch follows the batch, not the hour:

1. Each clean event (the silver rules and normalisation) becomes a few *contribution* rows
   (`open_contributions`, Spark), each with a 16-byte de-duplication key:
   - an event row for its brand and one for the shop, keyed by the event key: the event counts
     and revenue (the counts `rules.EVENT_COUNTS` names), so a duplicate event counts once;
   - for a view, cart or purchase, a row per actor (session, user) for its brand, keyed by
     (hour, brand, step, actor): the hour's distinct sessions and users per step, exact;
   - for a view or purchase with a session, a row for its brand and one for the shop, keyed by
     (minute, scope, step, session): the minute's distinct viewing and purchasing sessions.
2. The query's sink (streaming/open_state.py) counts each key once within the watermark (the
   keys already counted are held beside the query's checkpoint) and adds the new rows' totals
   per (minute, scope) (`cells_sql`) to the open cells.

An actor row's cell time is the last instant of its hour (or minute), so its key is kept until
that hour (minute) closes, and it is counted in that hour's last minute cell: summing an hour's
minute cells gives its exact distinct counts. The published tables are derived from the cells
(`open_hours_sql`, `open_minutes_sql`): the closed table's columns for each open hour × brand,
and the minute funnel of the shop and the top brands.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import EVENT_COUNTS, FUNNEL_RATES, REVENUE
from funnelpulse_dagster.tables import (
    EVENT_KEY,
    LIVE_MINUTE_FUNNEL,
    LIVE_OPEN_HOURLY_BRAND,
    REVENUE_TYPE,
    SHOP_SCOPE,
)
from funnelpulse_dagster.transforms.gold import ACTORS, FUNNEL_STEPS

_EVENT, _HOUR_ACTOR, _MINUTE_SESSION = "event", "hour_actor", "minute_session"
# the steps whose distinct sessions the minute funnel shows
MINUTE_STEPS = ("view", "purchase")


def _last_instant() -> Column:
    return F.expr("INTERVAL 1 MICROSECOND")


def hour_actor_column(step: str, suffix: str) -> str:
    """The cell column counting an hour's distinct actors of a step (e.g. `hour_view_sessions`)."""
    return f"hour_{step}_{suffix}"


def minute_session_column(step: str) -> str:
    return f"minute_{step}_sessions"


_REVENUE_SQL_TYPE = REVENUE_TYPE.simpleString()  # decimal(18,2), in DuckDB's SQL too

# every counted column of a cell, beside its revenue and newest event time
CELL_COUNTS = (
    *EVENT_COUNTS,
    *[hour_actor_column(step, suffix) for suffix in ACTORS.values() for step in FUNNEL_STEPS],
    *[minute_session_column(step) for step in MINUTE_STEPS],
)


def _key(*parts: Column) -> Column:
    """16 bytes per distinct tuple of `parts`: the MD5 of their text (NULL spelled apart from
    any text). Keys stay small however long the brand or session; two tuples share a key with a
    probability of about n² / 2¹²⁹ (below 10⁻²⁰ for a hundred million keys)."""
    text = F.concat_ws("\u001f", *[F.coalesce(p.cast("string"), F.lit("\u0000")) for p in parts])
    return F.unhex(F.md5(text))


def _row(kind: str, is_shop: bool, time: Column, key: list[Column], **values: Column) -> Column:
    fields = {"event_type": None, "price": None, "step": None, "actor": None, **values}
    scope = F.lit(None).cast("string") if is_shop else F.col("brand_norm")
    return F.struct(
        F.lit(kind).alias("kind"),
        F.lit(is_shop).alias("is_shop"),
        scope.alias("scope"),
        time.alias("cell_time"),
        _key(F.lit(kind), F.lit(is_shop), scope, *key).alias("dedup_key"),
        *[
            (value if value is not None else F.lit(None).cast(_VALUE_TYPES[name])).alias(name)
            for name, value in fields.items()
        ],
    )


_VALUE_TYPES = {"event_type": "string", "price": "decimal(12,2)", "step": "string", "actor": "string"}


def _checked_minutes(minutes: int) -> int:
    if minutes < 1 or 60 % minutes:
        raise ValueError(f"the live minute window must divide an hour, got {minutes} minutes")
    return minutes


def _minute_window(minutes: int) -> Column:
    return F.window("event_time", f"{_checked_minutes(minutes)} minutes")


def open_contributions(events: DataFrame, minutes: int = 1) -> DataFrame:
    """Clean, normalised events → contribution rows (see the module docstring) for minute
    cells `minutes` long."""
    hour_end = F.date_trunc("hour", "event_time") + F.expr("INTERVAL 1 HOUR") - _last_instant()
    minute_window = _minute_window(minutes)
    minute_end = minute_window.end - _last_instant()
    event_key = [F.col(c) for c in EVENT_KEY]
    event_values = {"event_type": F.col("event_type"), "price": F.col("price")}
    rows = [_row(_EVENT, False, F.col("event_time"), event_key, **event_values)]
    rows.append(_row(_EVENT, True, F.col("event_time"), event_key, **event_values))
    is_step = F.col("event_type").isin(*FUNNEL_STEPS)
    conditional = []
    for actor, suffix in ACTORS.items():
        key = [F.date_trunc("hour", "event_time"), F.col("event_type"), F.lit(suffix), F.col(actor)]
        row = _row(_HOUR_ACTOR, False, hour_end, key, step=F.col("event_type"), actor=F.lit(suffix))
        conditional.append(F.when(is_step & F.col(actor).isNotNull(), row))
    for is_shop in (False, True):
        key = [minute_window.start, F.col("event_type"), F.col("user_session")]
        row = _row(
            _MINUTE_SESSION, is_shop, minute_end, key, step=F.col("event_type"), actor=F.lit("sessions")
        )
        conditional.append(
            F.when(F.col("event_type").isin(*MINUTE_STEPS) & F.col("user_session").isNotNull(), row)
        )
    exploded = events.select(
        F.explode(F.filter(F.array(*rows, *conditional), lambda r: r.isNotNull())).alias("r")
    )
    return exploded.select("r.*")


def cells_sql(contributions: str, minutes: int = 1) -> str:
    """DuckDB SQL: the contribution rows in relation `contributions`, each key counted once →
    totals per (minute cell, scope): event counts and revenue (the event rows, as gold's own
    `funnel_aggregations` counts them), distinct actors per step (the actor rows), newest event time."""
    minutes = _checked_minutes(minutes)

    def count(condition: str, alias: str) -> str:
        return f"count(*) FILTER (WHERE {condition}) AS {alias}"

    event = f"kind = '{_EVENT}'"
    aggregates = [count(f"{event} AND event_type = '{t}'", metric) for metric, t in EVENT_COUNTS.items()]
    purchases = f"{event} AND event_type = '{EVENT_COUNTS['purchases']}'"
    aggregates.append(
        f"CAST(coalesce(sum(price) FILTER (WHERE {purchases}), 0) AS {_REVENUE_SQL_TYPE}) AS {REVENUE}"
    )
    aggregates += [
        count(
            f"kind = '{_HOUR_ACTOR}' AND step = '{step}' AND actor = '{suffix}'",
            hour_actor_column(step, suffix),
        )
        for suffix in ACTORS.values()
        for step in FUNNEL_STEPS
    ]
    aggregates += [
        count(
            f"kind = '{_MINUTE_SESSION}' AND step = '{step}' AND actor = 'sessions'",
            minute_session_column(step),
        )
        for step in MINUTE_STEPS
    ]
    aggregates.append(f"max(cell_time) FILTER (WHERE {event}) AS newest_event_time")
    window = f"time_bucket(INTERVAL {minutes} MINUTE, cell_time)"
    return (
        f"SELECT {window} AS window_start, {window} + INTERVAL {minutes} MINUTE AS window_end, "
        f"is_shop, scope, {', '.join(aggregates)} "
        f"FROM (SELECT DISTINCT ON (dedup_key) * FROM {contributions}) GROUP BY ALL"
    )


def cell_totals_sql(cells: str) -> str:
    """DuckDB SQL: the cells in relation `cells` (with repeats: earlier totals and a batch's new
    ones) added up per (minute cell, scope)."""
    totals = [f"CAST(sum({c}) AS BIGINT) AS {c}" for c in CELL_COUNTS]
    totals.append(f"CAST(sum({REVENUE}) AS {_REVENUE_SQL_TYPE}) AS {REVENUE}")
    totals.append("max(newest_event_time) AS newest_event_time")
    return (
        f"SELECT window_start, window_end, is_shop, scope, {', '.join(totals)} "
        f"FROM {cells} GROUP BY window_start, window_end, is_shop, scope"
    )


# -- the published tables, from the cells (DuckDB SQL over the merged cells) ------------------
def _rates_sql() -> str:
    return ", ".join(
        f"CAST({r.numerator} AS DOUBLE) / NULLIF({r.denominator}, 0) AS {r.name}" for r in FUNNEL_RATES
    )


def open_hours_sql(cells: str, version: int) -> str:
    """LIVE_OPEN_HOURLY_BRAND's rows from the cells relation `cells`: each hour × brand."""
    hour_actors = ", ".join(
        f"CAST(sum({hour_actor_column(step, suffix)}) AS BIGINT) AS {step}_{suffix}"
        for suffix in ACTORS.values()
        for step in FUNNEL_STEPS
    )
    counts = ", ".join(
        f"CAST(sum({c}) AS BIGINT) AS {c}" for c in ("views", "carts", "remove_from_carts", "purchases")
    )
    inner = (
        f"SELECT date_trunc('hour', window_start) AS window_start, "
        f"date_trunc('hour', window_start) + INTERVAL 1 HOUR AS window_end, scope AS brand, {counts}, "
        f"CAST(sum(revenue) AS {_REVENUE_SQL_TYPE}) AS revenue, {hour_actors} "
        f"FROM {cells} WHERE NOT is_shop GROUP BY 1, 2, 3"
    )
    columns = ", ".join(f'"{c}"' for c in LIVE_OPEN_HOURLY_BRAND.schema.fieldNames())
    return (
        f"SELECT {columns} FROM (SELECT *, {_rates_sql()}, CAST(window_start AS DATE) AS window_date, "
        f"(SELECT max(newest_event_time) FROM {cells}) AS as_of, CAST({version} AS BIGINT) AS version "
        f"FROM ({inner}))"
    )


def open_minutes_sql(cells: str, version: int, top_brands: int) -> str:
    """LIVE_MINUTE_FUNNEL's rows from the cells: the shop's minutes and those of the
    `top_brands` brands with the most views in the open hours."""
    columns = ", ".join(f'"{c}"' for c in LIVE_MINUTE_FUNNEL.schema.fieldNames())
    top = (
        f"SELECT scope FROM {cells} WHERE NOT is_shop AND scope IS NOT NULL GROUP BY scope "
        f"ORDER BY sum(views) DESC, scope LIMIT {int(top_brands)}"
    )
    inner = (
        f"SELECT window_start, window_end, CASE WHEN is_shop THEN '{SHOP_SCOPE}' ELSE scope END AS scope, "
        f"CAST(views AS BIGINT) AS views, CAST(carts AS BIGINT) AS carts, "
        f"CAST(purchases AS BIGINT) AS purchases, CAST(revenue AS {_REVENUE_SQL_TYPE}) AS revenue, "
        f"CAST({minute_session_column('view')} AS BIGINT) AS view_sessions, "
        f"CAST({minute_session_column('purchase')} AS BIGINT) AS purchase_sessions "
        f"FROM {cells} WHERE is_shop OR scope IN ({top})"
    )
    return (
        f"SELECT {columns} FROM (SELECT *, {_rates_sql()}, "
        f"(SELECT max(newest_event_time) FROM {cells}) AS as_of, CAST({version} AS BIGINT) AS version "
        f"FROM ({inner}))"
    )
