// FunnelPulse dashboard: plain JavaScript over the service's JSON API (no build step).
"use strict";

const params = new URLSearchParams(window.location.search);
const REFRESH_SECONDS = Number(params.get("refresh") || 15);
// the live panel asks every second (the server picks up a new open state within half a second)
// and redraws only when the state or the newest closed hour changed
const LIVE_REFRESH_SECONDS = Number(params.get("live_refresh") || 1);
let shownLive = null;
const LIVE_HOURS = Number(params.get("hours") || 12);
const fmtInt = new Intl.NumberFormat("en-US");
const fmtMoney = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
const el = (id) => document.getElementById(id);

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(`${url}: ${response.status} ${body.detail ? JSON.stringify(body.detail) : ""}`);
  return body;
}

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function behind(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  // replayed history (the demo, backfills) is years old: say so rather than count the days
  if (seconds > 30 * 86400) return "replayed history, " + fmtInt.format(Math.round(seconds / 86400)) + " days";
  if (seconds < 2 * 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 3 * 86400) return Math.round(seconds / 3600) + " h";
  return fmtInt.format(Math.round(seconds / 86400)) + " days";
}

function card(label, value, title) {
  const hover = title ? ` title="${title}"` : "";
  return `<div class="card"${hover}><div class="label">${label}</div><div class="value">${value}</div></div>`;
}

// what the event funnel's conversion counts (the session funnel below counts sessions)
const EVENT_RATIO = "purchase events per view event: a ratio of events, not of shoppers, so an hour of repeat purchases can pass 100 %";

function showError(sectionId, error) {
  const section = el(sectionId);
  let box = section.querySelector(".error");
  if (!box) { box = document.createElement("div"); box.className = "error"; section.appendChild(box); }
  box.textContent = String(error);
}

function clearError(sectionId) {
  const box = el(sectionId).querySelector(".error");
  if (box) box.remove();
}

async function refreshStatus() {
  try {
    const health = await getJSON("/health");
    const hourly = health.tables.gold_funnel_hourly_brand;
    const live = health.tables.gold_stream_funnel_hourly_brand;
    const parts = [
      `batch gold ${hourly.partitions} day(s)${hourly.last ? " to " + hourly.last : ""}`,
      `live ${live.rows ? fmtInt.format(live.rows) + " brand-hours to " + live.last : "no data yet"}`,
      `refreshed ${health.last_refresh_age_seconds ?? "–"} s ago`,
    ];
    if (health.refresh_error) parts.push("refresh error: " + health.refresh_error);
    el("status").textContent = parts.join(" · ");
  } catch (error) {
    el("status").textContent = String(error);
  }
}

// one hour's funnel as cards: views, carts, purchases, conversion, revenue
function hourCards(hour, viewsLabel) {
  return [
    card(viewsLabel, fmtInt.format(hour.views)),
    card("carts", fmtInt.format(hour.carts)),
    card("purchases", fmtInt.format(hour.purchases)),
    card("purchases / views", pct(hour.conversion_rate), EVENT_RATIO),
    card("revenue", fmtMoney.format(hour.revenue)),
  ];
}

function renderOpen(open) {
  // the hours the watermark has not closed yet, as of the newest published event: numbers that
  // still change (late events), labelled provisional; the closed table below is the reference
  if (!open || !open.hours.length) {
    el("open-caption").textContent = "no open hour: the stream has published nothing after the last closed hour";
    el("open-cards").innerHTML = "";
    el("live-open").dataset.ready = "empty";
    return;
  }
  const hour = open.hours[open.hours.length - 1];
  el("open-caption").textContent = `${hour.window_start}, as of ${open.as_of}` +
    (open.hours.length > 1 ? ` (${open.hours.length} hours open)` : "");
  el("open-cards").innerHTML = hourCards(hour, "views so far").join("");
  const x = open.minutes.map((m) => m.window_start);
  Plotly.react("open-chart", [
    { x, y: open.minutes.map((m) => m.views), name: "views / min", type: "bar", marker: { color: "#aab7cf" } },
    { x, y: open.minutes.map((m) => m.purchases), name: "purchases / min", type: "bar", marker: { color: "#1f3c88" } },
  ], {
    margin: { t: 10, r: 20, b: 80, l: 60 }, barmode: "overlay", legend: { orientation: "h" },
    xaxis: { title: { text: "minute (UTC), last hour of events" }, automargin: true }, yaxis: { title: { text: "events" } },
  }, { displayModeBar: false, responsive: true });
  el("live-open").dataset.ready = "true";
}

async function refreshLive() {
  try {
    const live = await getJSON(`/api/live?hours=${LIVE_HOURS}`);
    clearError("live-funnel");
    const key = JSON.stringify([live.open.state_version, live.open.as_of, live.hours.length && live.hours[live.hours.length - 1]]);
    if (key === shownLive) return;
    shownLive = key;
    renderOpen(live.open);
    if (!live.hours.length) {
      el("live-caption").textContent = "no closed hours in the streaming table yet: run the live funnel job";
      el("live-cards").innerHTML = "";
      el("live-funnel").dataset.ready = "empty";
      return;
    }
    const newest = live.hours[live.hours.length - 1];
    const sum = (key) => live.hours.reduce((acc, h) => acc + (h[key] || 0), 0);
    el("live-caption").textContent = `newest closed hour ${newest.window_start} (${behind(live.lag_seconds)} behind the clock)`;
    el("live-cards").innerHTML = [
      ...hourCards(newest, "views, newest hour"),
      card(`purchases, last ${live.hours.length} h`, fmtInt.format(sum("purchases"))),
      card(`purchases / views, last ${live.hours.length} h`, pct(sum("views") ? sum("purchases") / sum("views") : null), EVENT_RATIO),
    ].join("");
    const x = live.hours.map((h) => h.window_start);
    Plotly.react("live-chart", [
      { x, y: live.hours.map((h) => h.views), name: "views", type: "bar", marker: { color: "#aab7cf" } },
      { x, y: live.hours.map((h) => h.carts), name: "carts", type: "bar", marker: { color: "#5d7bb5" } },
      { x, y: live.hours.map((h) => h.purchases), name: "purchases", type: "bar", marker: { color: "#1f3c88" } },
      { x, y: live.hours.map((h) => h.conversion_rate), name: "purchases / views", yaxis: "y2", type: "scatter",
        mode: "lines+markers", line: { color: "#e67e22" } },
    ], {
      margin: { t: 10, r: 60, b: 80, l: 60 }, barmode: "group", legend: { orientation: "h" },
      xaxis: { title: { text: "hour (UTC)" }, automargin: true }, yaxis: { title: { text: "events" } },
      yaxis2: { title: { text: "purchases / views" }, overlaying: "y", side: "right", tickformat: ".1%" },
    }, { displayModeBar: false, responsive: true });
    el("live-brands").innerHTML =
      "<table><thead><tr><th>brand, newest hour</th><th class='num'>views</th><th class='num'>carts</th>" +
      "<th class='num'>purchases</th><th class='num' title='" + EVENT_RATIO + "'>purchases / views</th><th class='num'>revenue</th></tr></thead><tbody>" +
      live.top_brands.map((b) => `<tr><td>${escapeHtml(b.brand ?? "(no brand)")}</td><td class="num">${fmtInt.format(b.views)}</td>` +
        `<td class="num">${fmtInt.format(b.carts)}</td><td class="num">${fmtInt.format(b.purchases)}</td>` +
        `<td class="num">${pct(b.conversion_rate)}</td><td class="num">${fmtMoney.format(b.revenue)}</td></tr>`).join("") +
      "</tbody></table>";
    el("live-funnel").dataset.ready = "true";
  } catch (error) {
    showError("live-funnel", error);
  }
}

async function loadBrands() {
  const brands = await getJSON("/api/brands?limit=100");
  const select = el("brand-select");
  const named = brands.items.filter((b) => b.value !== null);
  select.innerHTML = named.map((b) => `<option value="${escapeHtml(b.value)}">${escapeHtml(b.value)}</option>`).join("");
  const wanted = params.get("brand");
  if (wanted && named.some((b) => b.value === wanted)) select.value = wanted;
  select.addEventListener("change", refreshTrend);
}

async function refreshTrend() {
  const brand = el("brand-select").value;
  if (!brand) { el("trend-caption").textContent = "no brands in the gold tables yet"; return; }
  try {
    const hourly = await getJSON(`/api/funnel/hourly?dimension=brand&value=${encodeURIComponent(brand)}&limit=5000`);
    const flagged = await getJSON(
      `/api/anomalies?brand=${encodeURIComponent(brand)}&since=${hourly.start}T00:00:00Z&limit=500`);
    clearError("brand-trend");
    el("trend-caption").textContent = `${hourly.start} to ${hourly.end}, hourly, ${flagged.total} anomal${flagged.total === 1 ? "y" : "ies"}`;
    const traces = [{
      x: hourly.items.map((r) => r.window_start), y: hourly.items.map((r) => r.conversion_rate),
      name: "purchase events / view events", type: "scatter", mode: "lines", line: { color: "#1f3c88" },
    }];
    for (const [kind, color, symbol] of [["drop", "#c0392b", "triangle-down"], ["spike", "#1e8449", "triangle-up"]]) {
      const marks = flagged.items.filter((a) => a.anomaly_type === kind);
      if (!marks.length) continue;
      traces.push({
        x: marks.map((a) => a.window_start), y: marks.map((a) => a.conversion_rate), name: kind + "s",
        mode: "markers", type: "scatter", marker: { color, symbol, size: 12 },
        text: marks.map((a) => `expected ${pct(a.expected_conversion_rate)}<br>${escapeHtml(a.top_hint)}`),
        hovertemplate: "%{x}<br>conversion %{y:.1%}<br>%{text}<extra></extra>",
      });
    }
    Plotly.react("trend-chart", traces, {
      margin: { t: 10, r: 20, b: 80, l: 60 }, legend: { orientation: "h" },
      yaxis: { title: { text: "purchases / views" }, tickformat: ".0%" },
      xaxis: { title: { text: "hour (UTC)" }, automargin: true, rangeselector: { buttons: [
        { count: 1, label: "1d", step: "day", stepmode: "backward" },
        { count: 3, label: "3d", step: "day", stepmode: "backward" }, { step: "all" }] } },
    }, { displayModeBar: false, responsive: true });
    el("brand-trend").dataset.ready = "true";
  } catch (error) {
    showError("brand-trend", error);
  }
}

async function refreshIncidents() {
  const type = el("incident-type").value;
  try {
    const page = await getJSON(`/api/anomalies?limit=50${type ? "&type=" + type : ""}`);
    clearError("incidents");
    el("incident-caption").textContent = `${page.total} in all, newest first`;
    el("incident-rows").innerHTML = page.items.length
      ? page.items.map((a) => `<tr class="incident"><td>${a.window_start}</td><td>${escapeHtml(a.brand)}</td>` +
          `<td class="${a.anomaly_type}">${a.anomaly_type}</td><td>${a.severity}</td><td class="num">${fmtInt.format(a.views)}</td>` +
          `<td class="num">${pct(a.conversion_rate)}</td><td class="num">${pct(a.expected_conversion_rate)}</td>` +
          `<td class="num">${a.score.toFixed(1)}</td><td>${escapeHtml(a.top_hint)}</td></tr>`).join("")
      : `<tr><td colspan="9" class="muted">no anomalies in the table</td></tr>`;
    el("incidents").dataset.ready = "true";
  } catch (error) {
    showError("incidents", error);
  }
}

const duration = (s) => (s === null || s === undefined ? "–" : s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`);
const change = (c) => (c.relative === null || c.relative === undefined ? "–" : `${c.relative >= 0 ? "+" : ""}${(100 * c.relative).toFixed(1)} %`);

function orderedRows(label, f) {
  const day = f.days.length === 1 ? f.days[0] : {};
  const steps = [
    ["viewed", "viewed_sessions", null, null],
    ["then carted", "carted_sessions", "view_to_cart_rate", "median_seconds_view_to_cart"],
    ["then bought", "purchased_sessions", "cart_to_purchase_rate", "median_seconds_cart_to_purchase"],
  ];
  const outside = `<tr class="outside"><td></td><td title="sessions that bought such a product without viewing, then carting it before, in the session">bought outside that path</td>` +
    `<td class="num">${fmtInt.format(f.bought_outside_path)}</td><td class="num">of ${fmtInt.format(f.bought_sessions)} that bought</td>` +
    `<td></td><td></td><td class="num">${fmtInt.format(f.previous_week.bought_outside_path)}</td><td class="num">${change(f.change.bought_outside_path)}</td></tr>`;
  return steps.map(([step, count, rate, time], i) =>
    `<tr><td>${i === 0 ? escapeHtml(label) : ""}</td><td>${step}</td><td class="num">${fmtInt.format(f[count])}</td>` +
    `<td class="num">${rate ? pct(f[rate]) : ""}</td>` +
    `<td class="num">${i === 1 ? fmtInt.format(f.dropped_after_view) : i === 2 ? fmtInt.format(f.dropped_after_cart) : ""}</td>` +
    `<td class="num">${time ? duration(day[time]) : ""}</td>` +
    `<td class="num">${fmtInt.format(f.previous_week[count])}</td><td class="num">${change(f.change[count])}</td></tr>`).join("") + outside;
}

async function refreshOrdered() {
  // the shop and the chosen brand, on the newest day, beside the same weekday a week earlier
  try {
    const brand = el("brand-select").value;
    const shop = await getJSON("/api/funnel/ordered");
    const parts = [orderedRows("shop", shop)];
    if (brand) {
      const one = await getJSON(`/api/funnel/ordered?dimension=brand&value=${encodeURIComponent(brand)}&start=${shop.start}&end=${shop.end}`);
      parts.push(orderedRows(brand, one));
    }
    clearError("ordered-funnel");
    el("ordered-caption").textContent = `sessions starting ${shop.start}${shop.end !== shop.start ? " to " + shop.end : ""}, vs ${shop.previous_week.start}; sessions, not events: a step counts only after the one before; the last row counts the sessions that bought outside that path`;
    el("ordered-table").innerHTML =
      "<table><thead><tr><th></th><th>step</th><th class='num'>sessions</th><th class='num'>of the step before</th>" +
      "<th class='num'>dropped</th><th class='num'>median time</th><th class='num'>a week before</th><th class='num'>change</th></tr></thead><tbody>" +
      parts.join("") + "</tbody></table>";
    el("ordered-funnel").dataset.ready = "true";
  } catch (error) {
    showError("ordered-funnel", error);
  }
}

async function main() {
  el("incident-type").addEventListener("change", refreshIncidents);
  await refreshStatus();
  try { await loadBrands(); } catch (error) { showError("brand-trend", error); }
  el("brand-select").addEventListener("change", refreshOrdered);
  await Promise.all([refreshLive(), refreshTrend(), refreshIncidents(), refreshOrdered()]);
  setInterval(() => { refreshStatus(); refreshIncidents(); }, REFRESH_SECONDS * 1000);
  setInterval(refreshLive, LIVE_REFRESH_SECONDS * 1000);
}

main();
