"""The funnel report: one self-contained HTML file of plotly charts over the gold tables.

`gather()` asks the serving queries (the web service's own SQL) for every number the charts
show; `render()` turns those numbers into figures and one HTML document with plotly.js inlined,
so the file opens offline. The asset supplies what DuckDB over gold cannot: the shop's distinct
sessions (from silver) and the detector's baseline band for the deep-dive brand (Spark).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from funnelpulse_dagster.serving import jsonrows, queries
from funnelpulse_dagster.tables import PRICE_BANDS

TOP_BRANDS = 15
TREND_BRANDS = 5
UNKNOWN = "unknown"  # how a NULL category root, brand or band is labelled
# chart id → title; the ids are the HTML element ids (tests look for each)
CHARTS = {
    "top-brands": "Top brands by revenue",
    "daily-revenue": "Daily revenue, top brands",
    "daily-conversion": "Daily conversion (purchases / views), top brands",
    "category": "Revenue and conversion by category root",
    "price-band": "Revenue and conversion by price band",
    "funnel": "The funnel: views → carts → purchases",
    "ordered-funnel": "Sessions in order: viewed, then carted, then bought (drop-off and time to convert)",
    "anomaly-counts": "Anomalies per day by type",
    "brand-deep-dive": "Brand deep dive: hourly session conversion, baseline band and anomalies",
}


@dataclass
class ReportData:
    start: date
    end: date
    totals: dict[str, Any]
    brands: list[dict[str, Any]]  # top named brands by revenue (totals_by rows)
    daily_brands: pd.DataFrame  # date, brand, revenue, conversion_rate for the trend brands
    categories: list[dict[str, Any]]
    price_bands: list[dict[str, Any]]
    anomaly_counts: pd.DataFrame  # date, anomaly_type, anomalies
    deep_dive_brand: str | None
    deep_dive_anomalies: list[dict[str, Any]]
    session_funnel: dict[str, int] = field(default_factory=dict)  # view/cart/purchase → sessions
    deep_dive_hours: pd.DataFrame | None = None  # window_start, session rates, band (from Spark)
    ordered: dict[str, dict[str, Any]] = field(default_factory=dict)  # "shop" / the brand → ordered funnel


def _label(value: Any) -> str:
    return UNKNOWN if value is None else str(value)


def pick_brand(con, start: date, end: date, requested: str | None) -> str | None:
    """The deep-dive brand: the one asked for, else the one with the most anomalies in the
    range, else the top brand by revenue."""
    if requested:
        return requested
    flagged = jsonrows.rows(
        con,
        "SELECT brand, count(*) AS n FROM gold_anomalies_hourly_brand WHERE window_date BETWEEN ? AND ? "
        "GROUP BY brand ORDER BY n DESC, brand LIMIT 1",
        [start, end],
        order_by="n DESC, brand",
    )
    if flagged:
        return flagged[0]["brand"]
    page, _, _ = queries.totals_by(con, queries.BREAKDOWN_DIMENSIONS, "brand", start, end, limit=10)
    named = [r["value"] for r in page.items if r["value"] is not None]
    return named[0] if named else None


def report_range(con, end: date | None, days: int) -> tuple[date, date]:
    """`days` days ending at `end` (default: the last day of hourly brand gold)."""
    return queries.date_range(con, queries.HOURLY_DIMENSIONS["brand"][0], None, end, days)


def gather(con, start: date, end: date, brand: str | None) -> ReportData:
    """Every number of the report except the asset's Spark parts, from the serving SQL."""
    every = jsonrows.MAX_PAGE
    # events without a brand are one row of the brand table; they are not a brand to rank
    brands, _, _ = queries.totals_by(
        con, queries.BREAKDOWN_DIMENSIONS, "brand", start, end, limit=TOP_BRANDS + 1
    )
    named = [r for r in brands.items if r["value"] is not None][:TOP_BRANDS]
    trend = [r["value"] for r in named[:TREND_BRANDS]]
    daily_page, _, _ = (
        queries.funnel_rows(con, queries.DAILY_DIMENSIONS, "brand", trend, start, end, limit=every)
        if trend
        else (jsonrows.Page("[]", 0, every, 0, 0), start, end)
    )
    # the columns the trend charts draw (from the records, or an empty frame with them)
    daily = pd.DataFrame(daily_page.items, columns=["date", "brand", "revenue", "conversion_rate", "views"])
    categories, _, _ = queries.totals_by(
        con, queries.BREAKDOWN_DIMENSIONS, "category", start, end, limit=every
    )
    bands, _, _ = queries.totals_by(con, queries.BREAKDOWN_DIMENSIONS, "price_band", start, end, limit=every)
    band_order = {b: i for i, b in enumerate(PRICE_BANDS)}
    counts = pd.DataFrame(
        queries.daily_anomaly_counts(con, start, end), columns=["date", "anomaly_type", "anomalies"]
    )
    flagged = (
        queries.anomalies(
            con,
            since=datetime.combine(start, datetime.min.time()),
            until=datetime.combine(end, datetime.min.time()) + pd.Timedelta(days=1),
            brand=brand,
            limit=every,
        ).items
        if brand
        else []
    )
    ordered = {"shop": queries.ordered_funnel(con, "shop", None, start, end)}
    if brand:
        ordered[brand] = queries.ordered_funnel(con, "brand", brand, start, end)
    return ReportData(
        ordered=ordered,
        start=start,
        end=end,
        totals=queries.funnel_totals(con, start, end),
        brands=named,
        daily_brands=daily,
        categories=categories.items,
        price_bands=sorted(bands.items, key=lambda r: band_order.get(r["value"], len(band_order))),
        anomaly_counts=counts,
        deep_dive_brand=brand,
        deep_dive_anomalies=flagged,
    )


# -- figures -------------------------------------------------------------------------------
_LAYOUT = {"template": "plotly_white", "margin": {"t": 60, "r": 30, "b": 50, "l": 70}, "height": 420}
_RANGE_SELECTOR = {
    "buttons": [
        {"count": 7, "label": "7d", "step": "day", "stepmode": "backward"},
        {"count": 14, "label": "14d", "step": "day", "stepmode": "backward"},
        {"step": "all", "label": "all"},
    ]
}


def _titled(figure: go.Figure, chart: str, **layout) -> go.Figure:
    figure.update_layout(title={"text": CHARTS[chart]}, **{**_LAYOUT, **layout})
    return figure


def top_brands_figure(data: ReportData) -> go.Figure:
    names = [r["value"] for r in data.brands][::-1]
    revenue = [r["revenue"] for r in data.brands][::-1]
    figure = go.Figure(
        go.Bar(
            x=revenue,
            y=names,
            orientation="h",
            name="revenue",
            hovertemplate="%{y}: $%{x:,.2f}<extra></extra>",
        )
    )
    return _titled(figure, "top-brands", xaxis_title="revenue (USD)", yaxis_title="brand", height=520)


def _daily_lines(data: ReportData, chart: str, column: str, axis_title: str, tickformat: str) -> go.Figure:
    figure = go.Figure()
    # in revenue rank order, so the legend reads like the top-brands chart
    for brand in [r["value"] for r in data.brands[:TREND_BRANDS]]:
        rows = data.daily_brands[data.daily_brands["brand"] == brand]
        figure.add_trace(
            go.Scatter(x=rows["date"].tolist(), y=rows[column].tolist(), mode="lines+markers", name=brand)
        )
    figure.update_xaxes(title_text="date (UTC)", rangeselector=_RANGE_SELECTOR, type="date")
    figure.update_yaxes(title_text=axis_title, tickformat=tickformat)
    return _titled(figure, chart)


def _revenue_and_conversion(
    rows: list[dict[str, Any]], chart: str, axis_title: str, set_aside_unknown: bool = False
) -> go.Figure:
    """Revenue bars and conversion per value. With `set_aside_unknown`, the NULL group (events
    without a category: most of the shop's revenue) is stated in a note instead of drawn, so the
    named values' bars stay readable beside it."""
    unknown = [r for r in rows if r["value"] is None] if set_aside_unknown else []
    rows = [r for r in rows if not unknown or r["value"] is not None]
    labels = [_label(r["value"]) for r in rows]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    if unknown:
        total = sum(float(r["revenue"] or 0) for r in (*rows, *unknown))
        aside = unknown[0]
        share = float(aside["revenue"] or 0) / total if total else 0.0
        rate = "–" if aside["conversion_rate"] is None else f"{aside['conversion_rate']:.1%}"
        figure.add_annotation(
            text=f"not drawn: {UNKNOWN} ({axis_title} missing), revenue ${float(aside['revenue'] or 0):,.0f} "
            f"({share:.0%} of all), purchases / views {rate}",
            xref="paper", yref="paper", x=0, y=1.08, showarrow=False, align="left",
        )  # fmt: skip
    figure.add_trace(
        go.Bar(x=labels, y=[r["revenue"] for r in rows], name="revenue (USD)"), secondary_y=False
    )
    figure.add_trace(
        go.Scatter(x=labels, y=[r["conversion_rate"] for r in rows], name="conversion", mode="markers+lines"),
        secondary_y=True,
    )
    figure.update_xaxes(title_text=axis_title)
    figure.update_yaxes(title_text="revenue (USD)", secondary_y=False)
    figure.update_yaxes(title_text="purchases / views", tickformat=".1%", secondary_y=True)
    return _titled(figure, chart)


# funnel labels as whole numbers with thousands separators (plotly's default is SI: 904.593k)
_COUNT_OF_FIRST = "%{value:,d}<br>%{percentInitial:.1%} of the first step"


def funnel_figure(data: ReportData) -> go.Figure:
    steps = ["views", "carts", "purchases"]
    figure = make_subplots(
        rows=1,
        cols=2,
        specs=[[{"type": "funnel"}, {"type": "funnel"}]],
        subplot_titles=("events", "distinct sessions"),
    )
    figure.add_trace(
        go.Funnel(y=steps, x=[data.totals[s] for s in steps], name="events", texttemplate=_COUNT_OF_FIRST),
        row=1,
        col=1,
    )
    sessions = [data.session_funnel.get(s, 0) for s in ("view", "cart", "purchase")]
    figure.add_trace(
        go.Funnel(
            y=["sessions with a view", "with a cart", "with a purchase"],
            x=sessions,
            name="sessions",
            texttemplate=_COUNT_OF_FIRST,
        ),
        row=1,
        col=2,
    )
    return _titled(figure, "funnel", showlegend=False)


def _minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def ordered_funnel_figure(data: ReportData) -> go.Figure:
    """The shop's and the deep-dive brand's ordered session funnels over the report's days, with
    the newest day's median time to convert under each."""
    names = list(data.ordered)
    figure = make_subplots(rows=1, cols=max(1, len(names)), specs=[[{"type": "funnel"}] * max(1, len(names))],
                           subplot_titles=[
                               f"{name}: median view → cart {_minutes(f['days'][-1]['median_seconds_view_to_cart'] if f['days'] else None)}, "
                               f"cart → purchase {_minutes(f['days'][-1]['median_seconds_cart_to_purchase'] if f['days'] else None)}"
                               for name, f in data.ordered.items()
                           ] or ["no ordered funnel"])  # fmt: skip
    for column, (name, funnel) in enumerate(data.ordered.items(), start=1):
        figure.add_trace(
            go.Funnel(
                y=["viewed", "then carted", "then bought"],
                x=[funnel["viewed_sessions"], funnel["carted_sessions"], funnel["purchased_sessions"]],
                name=name,
                texttemplate="%{value:,d}<br>%{percentPrevious:.1%} of the step before",
            ),
            row=1,
            col=column,
        )
    return _titled(figure, "ordered-funnel", showlegend=False)


def anomaly_counts_figure(data: ReportData) -> go.Figure:
    figure = go.Figure()
    days = pd.date_range(data.start, data.end, freq="D").strftime("%Y-%m-%d").tolist()
    for kind, color in (("drop", "#c0392b"), ("spike", "#1e8449")):
        counts = data.anomaly_counts[data.anomaly_counts["anomaly_type"] == kind].set_index("date")[
            "anomalies"
        ]
        figure.add_trace(
            go.Bar(x=days, y=[int(counts.get(d, 0)) for d in days], name=f"{kind}s", marker_color=color)
        )
    figure.update_xaxes(title_text="date (UTC)", type="date")
    figure.update_yaxes(title_text="flagged brand-hours")
    return _titled(figure, "anomaly-counts", barmode="stack")


def deep_dive_figure(data: ReportData) -> go.Figure:
    figure = go.Figure()
    hours = data.deep_dive_hours
    if hours is not None and len(hours):
        x = hours["window_start"].tolist()
        figure.add_trace(
            go.Scatter(
                x=x,
                y=hours["band_high"].tolist(),
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=hours["band_low"].tolist(),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(93,123,181,0.2)",
                name="baseline band (±2σ, one hour)",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=hours["expected_session_conversion_rate"].tolist(),
                mode="lines",
                line={"dash": "dot", "color": "#5d7bb5"},
                name="baseline",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=hours["session_conversion_rate"].tolist(),
                mode="lines",
                line={"color": "#1f3c88"},
                name="session conversion",
            )
        )
    for kind, color, symbol in (("drop", "#c0392b", "triangle-down"), ("spike", "#1e8449", "triangle-up")):
        marks = [a for a in data.deep_dive_anomalies if a["anomaly_type"] == kind]
        if marks:
            figure.add_trace(
                go.Scatter(
                    x=[a["window_start"] for a in marks],
                    y=[a["session_conversion_rate"] for a in marks],
                    mode="markers",
                    marker={"color": color, "symbol": symbol, "size": 12},
                    name=f"{kind}s",
                    text=[
                        f"score {a['score']:.1f}, {a['severity']}<br>{html.escape(a['top_hint'] or '')}"
                        for a in marks
                    ],
                    hovertemplate="%{x}<br>session conversion %{y:.1%}<br>%{text}<extra></extra>",
                )
            )
    figure.update_xaxes(title_text="hour (UTC)", rangeselector=_RANGE_SELECTOR, type="date")
    figure.update_yaxes(title_text="purchasing sessions / viewing sessions", tickformat=".0%")
    title = f"{CHARTS['brand-deep-dive']}: {data.deep_dive_brand or 'no brand'}"
    figure.update_layout(title={"text": title}, **_LAYOUT)
    return figure


def figures(data: ReportData) -> dict[str, go.Figure]:
    return {
        "top-brands": top_brands_figure(data),
        "daily-revenue": _daily_lines(data, "daily-revenue", "revenue", "revenue (USD)", "$,.0f"),
        "daily-conversion": _daily_lines(
            data, "daily-conversion", "conversion_rate", "purchases / views", ".1%"
        ),
        "category": _revenue_and_conversion(
            data.categories, "category", "category root", set_aside_unknown=True
        ),
        "price-band": _revenue_and_conversion(data.price_bands, "price-band", "price band (USD)"),
        "funnel": funnel_figure(data),
        "ordered-funnel": ordered_funnel_figure(data),
        "anomaly-counts": anomaly_counts_figure(data),
        "brand-deep-dive": deep_dive_figure(data),
    }


def summary_markdown(data: ReportData) -> str:
    t = data.totals
    top = ", ".join(f"{r['value']} (${r['revenue']:,.2f})" for r in data.brands[:3])
    drops = int(data.anomaly_counts.loc[data.anomaly_counts["anomaly_type"] == "drop", "anomalies"].sum())
    spikes = int(data.anomaly_counts.loc[data.anomaly_counts["anomaly_type"] == "spike", "anomalies"].sum())
    conversion = f"{t['conversion_rate']:.2%}" if t["conversion_rate"] is not None else "–"
    return "\n".join(
        [
            f"**{data.start} to {data.end}** (UTC)",
            "",
            (
                f"- revenue **${t['revenue']:,.2f}** from {t['purchases']:,} purchases; {t['views']:,} views, "
                f"{t['carts']:,} carts; conversion {conversion}"
            ),
            f"- top brands: {top or '–'}",
            f"- anomalies: {drops} drops, {spikes} spikes",
            f"- deep dive: {data.deep_dive_brand or '–'}",
        ]
    )


def render(data: ReportData) -> tuple[str, dict[str, go.Figure]]:
    """The HTML document (plotly.js inlined once) and the figures it shows."""
    figs = figures(data)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = "\n".join(
        f'<section class="chart">{fig.to_html(full_html=False, include_plotlyjs=False, div_id=chart_id)}</section>'
        for chart_id, fig in figs.items()
    )
    summary_html = "".join(
        f"<li>{html.escape(line[2:].replace('**', ''))}</li>"
        for line in summary_markdown(data).splitlines()
        if line.startswith("- ")
    )
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>FunnelPulse funnel report {data.start} to {data.end}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #1f2430; }}
section.chart {{ margin: 24px 0; border-top: 1px solid #e3e6eb; }}
</style></head>
<body>
<h1>FunnelPulse funnel report</h1>
<p>{data.start} to {data.end} (UTC), generated {generated}. Event counts and revenue come from the gold
tables; sessions from silver; the baseline band is the anomaly detector's own.</p>
<ul id="summary">{summary_html}</ul>
{sections}
</body></html>
"""
    return document, figs
