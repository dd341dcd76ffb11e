"""Sample data in the format of Kaggle's "eCommerce Events History in Cosmetics Shop".

The real files cannot be downloaded on our machines, so this generator produces monthly CSVs with
the statistics of the real data set (docs/sample-data.md lists them) (event mix, null shares, price distribution,
daily and weekly rhythm, brand concentration, duplicated rows, zero and negative prices, purchases
without a prior view) plus a few malformed lines of every kind the pipeline must survive, and
optionally injected funnel anomalies whose ground truth is written beside the data.

Everything is vectorised with numpy and written with pyarrow: a month of ≈ 4 M events takes
seconds. Output is a pure function of the arguments (same seed, same bytes).
"""

from __future__ import annotations

import calendar
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from funnelpulse_dagster.rules import signed_percent
from funnelpulse_dagster.tables import EVENT_TYPES, RAW_COLUMNS

VIEW, CART, REMOVE, PURCHASE = range(4)

# Target shares measured on the real data set (dataset-facts.md); tests hold the generator to them.
TARGET_EVENT_MIX = {"view": 0.467, "cart": 0.279, "remove_from_cart": 0.192, "purchase": 0.062}
TARGET_NULL_BRAND = 0.42
TARGET_NULL_CATEGORY_CODE = 0.98
TARGET_NULL_SESSION = 0.0002
TARGET_PRICE_MEDIAN = 4.05
TARGET_TOP_BRAND_SHARE = 0.07
TARGET_ZERO_PRICE = 0.005
NEGATIVE_PRICE_RATE = 131 / 20_692_840
# Share of rows of each type that are exact duplicates of another row (session, time, product, type).
DUPLICATE_SHARE = {CART: 0.02, REMOVE: 0.249, PURCHASE: 0.0007, VIEW: 0.0001}
MEAN_EVENTS_PER_SESSION = 4.7
DEFAULT_EVENTS_PER_DAY = 135_000

# Sessions come in kinds; per-kind event-type probabilities are tuned so that, after duplicates,
# the event mix matches TARGET_EVENT_MIX (checked by the calibration test).
#                 share, mean events, P(view, cart, remove, purchase)
SESSION_KINDS = (
    (0.740, 2.3, (1.00, 0.00, 0.00, 0.00)),  # browse only
    (0.160, 10.0, (0.25, 0.45, 0.30, 0.00)),  # carts, never buys
    (0.085, 11.0, (0.05, 0.50, 0.20, 0.25)),  # buys after browsing
    (0.015, 3.0, (0.00, 0.30, 0.00, 0.70)),  # buys straight away (no view in the session)
)

# UTC hour-of-day profile: trough at 01 h, peak at 19 h, ≈ 8x apart (dataset-facts.md).
_HOUR_ANCHORS = {0: 1.3, 1: 1.0, 4: 1.3, 7: 2.6, 10: 4.2, 13: 5.4, 16: 6.6, 19: 8.0, 21: 6.4, 23: 2.4}
# Monday..Sunday: Thursday busiest, Saturday quietest.
_WEEKDAY_FACTOR = (1.00, 1.03, 1.06, 1.14, 0.98, 0.82, 0.93)
# How buying differs by weekday when a scenario asks for it (`weekday_conversion_swing`): the
# share of buying sessions moves by swing × this, busiest days buying most. Unused by default
# (the real data's weekday conversion is not in dataset-facts.md).
_WEEKDAY_CONVERSION = (0.2, 0.4, 0.6, 1.0, -0.2, -1.0, -0.6)

_REAL_BRANDS = (
    "runail",
    "irisk",
    "masura",
    "grattol",
    "bpw.style",
    "ingarden",
    "estel",
    "kapous",
    "jessnail",
    "uno",
    "concept",
    "freedecor",
    "max",
    "italwax",
    "shik",
    "lianail",
    "de.lux",
    "cnd",
    "polarus",
    "yoko",
    "staleks",
    "kinetics",
    "haruyama",
    "smart",
    "zinger",
    "bluesky",
    "domix",
    "artex",
    "beautix",
    "entity",
    "severina",
    "marathon",
    "roubloff",
    "lovely",
    "metzger",
    "airnails",
    "milv",
    "benovy",
    "nagaraku",
    "ecolab",
)
_CATEGORY_CODES = (
    "appliances.environment.vacuum",
    "furniture.living_room.cabinet",
    "accessories.bag",
    "stationery.cartrige",
    "apparel.glove",
    "accessories.cosmetic_bag",
    "furniture.bathroom.bath",
    "appliances.personal.hair_cutter",
    "furniture.living_room.chair",
    "sport.diving",
    "appliances.environment.air_conditioner",
)
# Kinds of malformed line the pipeline must quarantine or reject, with where each should end up.
MALFORMED_KINDS = (
    "garbage_line",  # bronze_quarantine: not CSV of nine fields
    "short_row",  # bronze_quarantine: too few fields
    "bad_timestamp",  # bronze_quarantine: event_time does not parse
    "non_numeric_price",  # bronze_quarantine: price does not parse
    "unknown_event_type",  # bronze, then removed by a silver rule
)


@dataclass(frozen=True)
class Holiday:
    """A run of days on which the whole shop is busier and buys more (a sale, a holiday week):
    every brand at once, so a detector must not take it for brand spikes."""

    first_day: int  # days after the export's start
    days: int = 7
    traffic: float = 3.0  # × the day's events
    conversion: float = 1.5  # × the buying sessions' share

    def covers(self, day: int) -> bool:
        return self.first_day <= day < self.first_day + self.days


@dataclass(frozen=True)
class InjectedAnomaly:
    brand: str
    window_start: str  # ISO UTC hour
    hours: int
    anomaly_type: str  # "drop" or "spike"
    magnitude: float  # drop: share of purchases removed; spike: extra purchases per purchase


def purchase_change(anomaly_type: str, magnitude: float) -> str:
    """An injected anomaly's size as the signed change in its window's purchases: a drop of
    magnitude 0.86 is "−86 %", a spike of magnitude 2.57 (extra purchases per purchase) "+257 %"."""
    size = float(magnitude)  # the ground truth file's text, or a number
    return signed_percent(-size if anomaly_type == "drop" else size)


@dataclass(frozen=True)
class AnomalySpec:
    """An anomaly placed by the caller instead of drawn at random (the evaluation's scenario
    families choose each anomaly's brand, day, hour, length and size)."""

    brand_rank: int  # 0 = the busiest brand
    day: int  # days after the generated range's first day
    start_hour: int  # UTC hour of day
    hours: int
    anomaly_type: str  # "drop" or "spike"
    magnitude: float  # as InjectedAnomaly.magnitude


@dataclass
class GenerationSummary:
    files: list[str]
    rows: int  # data lines written, malformed ones included
    malformed: dict[str, int]
    anomalies: list[InjectedAnomaly] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _hour_weights() -> np.ndarray:
    hours = sorted(_HOUR_ANCHORS)
    # interpolate around the clock (24 h wraps to 0 h)
    xs = np.array(hours + [24])
    ys = np.array([_HOUR_ANCHORS[h] for h in hours] + [_HOUR_ANCHORS[hours[0]]])
    weights = np.interp(np.arange(24), xs, ys)
    return weights / weights.sum()


def _assign_by_share(weights: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give each item a bucket so that bucket b holds ≈ shares[b] of the total weight.

    Items are visited in random order and cut into contiguous runs of cumulative weight, which
    hits the target shares far more tightly than independent draws would with heavy-tailed weights.
    """
    order = rng.permutation(len(weights))
    cumulative = np.cumsum(weights[order]) / weights.sum()
    midpoints = cumulative - weights[order] / weights.sum() / 2
    bucket_of_sorted = np.searchsorted(np.cumsum(shares) / shares.sum(), midpoints, side="right")
    buckets = np.empty(len(weights), dtype=np.int64)
    buckets[order] = np.minimum(bucket_of_sorted, len(shares) - 1)
    return buckets


def _zipf_exponent_for_top_share(n: int, top_share: float) -> float:
    """Exponent s of 1/k^s over n items whose first item gets top_share (bisection)."""
    lo, hi = 0.01, 3.0
    ranks = np.arange(1, n + 1, dtype=float)
    for _ in range(60):
        mid = (lo + hi) / 2
        share = 1.0 / np.sum(ranks**-mid)
        lo, hi = (mid, hi) if share < top_share else (lo, mid)
    return (lo + hi) / 2


@dataclass
class _Catalog:
    product_id: np.ndarray
    category_id: np.ndarray
    category_code: np.ndarray  # object array, None where empty
    brand: np.ndarray  # object array, None where empty
    price_cents: np.ndarray
    weight: np.ndarray  # popularity, sums to 1
    brands_by_volume: list[str]


def _build_catalog(
    rng: np.random.Generator, n_products: int, n_brands: int, top_brand_share: float = TARGET_TOP_BRAND_SHARE
) -> _Catalog:
    ranks = rng.permutation(n_products) + 1
    weight = ranks.astype(float) ** -0.7
    weight /= weight.sum()

    brand_names = list(_REAL_BRANDS) + [f"brand{i:03d}" for i in range(len(_REAL_BRANDS), n_brands)]
    branded = 1.0 - TARGET_NULL_BRAND
    s = _zipf_exponent_for_top_share(n_brands, top_brand_share / branded)
    brand_shares = branded * np.arange(1, n_brands + 1, dtype=float) ** -s
    brand_shares = brand_shares / brand_shares.sum() * branded
    buckets = _assign_by_share(weight, np.concatenate([[TARGET_NULL_BRAND], brand_shares]), rng)
    brand = np.array([None] + brand_names, dtype=object)[buckets]

    code_shares = np.full(len(_CATEGORY_CODES), (1 - TARGET_NULL_CATEGORY_CODE) / len(_CATEGORY_CODES))
    code_buckets = _assign_by_share(weight, np.concatenate([[TARGET_NULL_CATEGORY_CODE], code_shares]), rng)
    category_code = np.array([None, *_CATEGORY_CODES], dtype=object)[code_buckets]
    # 19-digit category ids, a few hundred of them, products sharing them
    category_pool = 1_487_580_000_000_000_000 + rng.choice(10**15, size=500, replace=False)
    category_id = category_pool[rng.integers(0, len(category_pool), n_products)]
    # products carrying a category code get a category id of their own per code
    for i, _code in enumerate(_CATEGORY_CODES, start=1):
        category_id[code_buckets == i] = 2_000_000_000_000_000_000 + i * 1_000_003

    # Prices: log-normal body (median ≈ 4, IQR ≈ 2..7) with a heavier tail, 2 decimals, cap ≈ 328.
    body = rng.lognormal(np.log(3.6), 0.8, n_products)
    tail = rng.lognormal(np.log(24.0), 0.75, n_products)
    price = np.where(rng.random(n_products) < 0.08, tail, body)
    price_cents = np.clip(np.round(price * 100), 5, 32_778).astype(np.int64)
    free = _assign_by_share(weight, np.array([1 - TARGET_ZERO_PRICE, TARGET_ZERO_PRICE]), rng) == 1
    price_cents[free] = 0

    product_id = 3_750_000 + rng.choice(2_000_000, size=n_products, replace=False)
    return _Catalog(
        product_id=product_id.astype(np.int64),
        category_id=category_id.astype(np.int64),
        category_code=category_code,
        brand=brand,
        price_cents=price_cents,
        weight=weight,
        brands_by_volume=brand_names,
    )


def _session_uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random version-4 UUID strings, built with array operations (a month needs ≈ 900 k)."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4  # version
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)  # variant
    hex_digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    parts = [
        hex_digits[:, :8],
        dash,
        hex_digits[:, 8:12],
        dash,
        hex_digits[:, 12:16],
        dash,
        hex_digits[:, 16:20],
        dash,
        hex_digits[:, 20:],
    ]
    return np.ascontiguousarray(np.hstack(parts)).view("S36").ravel().astype(str).astype(object)


def _format_price(cents: np.ndarray) -> pa.Array:
    sign = np.where(cents < 0, "-", "")
    absolute = np.abs(cents)
    whole = pc.cast(pa.array(absolute // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(absolute % 100), pa.string()), width=2, padding="0")
    return pc.binary_join_element_wise(pa.array(sign), whole, pa.scalar("."), frac, "")


def _generate_events(
    rng: np.random.Generator,
    catalog: _Catalog,
    start: date,
    days: int,
    events_per_day: int,
    weekly_strength: float = 1.0,
    weekday_conversion_swing: float = 0.0,
    holiday: Holiday | None = None,
) -> dict[str, np.ndarray]:
    hour_weights = _hour_weights()
    kind_share = np.array([k[0] for k in SESSION_KINDS])
    kind_mean = np.array([k[1] for k in SESSION_KINDS])
    kind_type_p = np.array([k[2] for k in SESSION_KINDS])
    # rows per session once duplicates are added, so that a day holds ≈ events_per_day rows
    inflation = np.array([1 / (1 - DUPLICATE_SHARE[t]) for t in range(len(EVENT_TYPES))])
    sessions_per_event = 1.0 / float(kind_share @ (kind_mean[:, None] * kind_type_p) @ inflation)

    day_starts, day_sessions = [], []
    for d in range(days):
        day = start + timedelta(days=d)
        weekday_factor = 1.0 + weekly_strength * (_WEEKDAY_FACTOR[day.weekday()] - 1.0)
        volume = events_per_day * weekday_factor * rng.lognormal(0, 0.05)
        if holiday is not None and holiday.covers(d):
            volume *= holiday.traffic
        day_sessions.append(int(volume * sessions_per_event))
        day_starts.append(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()))
    n_sessions = int(sum(day_sessions))
    session_day_start = np.repeat(np.array(day_starts, dtype=np.int64), day_sessions)

    if weekday_conversion_swing or holiday is not None:
        kind = _session_kinds_by_day(rng, kind_share, start, day_sessions, weekday_conversion_swing, holiday)
    else:
        kind = rng.choice(len(SESSION_KINDS), size=n_sessions, p=kind_share)
    size = 1 + rng.poisson(kind_mean[kind] - 1)
    hour = rng.choice(24, size=n_sessions, p=hour_weights)
    session_start = session_day_start + hour * 3600 + rng.integers(0, 3600, n_sessions)
    n_users = max(1, int(n_sessions / 2.2))
    session_user = 400_000_000 + rng.integers(0, n_users * 3, n_sessions)
    session_focal = rng.choice(len(catalog.weight), size=n_sessions, p=catalog.weight)
    session_uuid = _session_uuids(rng, n_sessions)

    sid = np.repeat(np.arange(n_sessions), size)
    n = len(sid)
    # event types: inverse-CDF draw per event from its session kind's probabilities
    cdf = np.cumsum(kind_type_p, axis=1)[kind[sid]]
    event_type = (rng.random(n)[:, None] > cdf).sum(axis=1).clip(0, 3)
    # time: session start plus exponential gaps (mean 50 s); first event at the session start
    gaps = rng.exponential(50.0, n).astype(np.int64)
    first = np.r_[True, sid[1:] != sid[:-1]]
    gaps[first] = 0
    csum = np.cumsum(gaps)
    offsets = csum - np.repeat(csum[first], size)
    event_time = session_start[sid] + offsets
    # products: mostly the session's focal product, sometimes another popular one
    product = np.where(
        rng.random(n) < 0.6,
        session_focal[sid],
        rng.choice(len(catalog.weight), size=n, p=catalog.weight),
    )
    return {
        "event_time": event_time,
        "event_type": event_type,
        "product": product,
        "user_id": session_user[sid],
        "session": session_uuid[sid],
    }


def _session_kinds_by_day(
    rng: np.random.Generator,
    kind_share: np.ndarray,
    start: date,
    day_sessions: list[int],
    swing: float,
    holiday: Holiday | None,
) -> np.ndarray:
    """Session kinds drawn day by day, the buying kinds' share moved by the weekday's
    _WEEKDAY_CONVERSION × swing and, on a holiday's days, times its conversion (browse-only
    sessions take up the difference)."""
    buying = np.array([kind[2][3] > 0 for kind in SESSION_KINDS])
    kinds = []
    for d, n in enumerate(day_sessions):
        share = kind_share.copy()
        share[buying] *= 1.0 + swing * _WEEKDAY_CONVERSION[(start + timedelta(days=d)).weekday()]
        if holiday is not None and holiday.covers(d):
            share[buying] *= holiday.conversion
        share[0] += 1.0 - share.sum()
        kinds.append(rng.choice(len(SESSION_KINDS), size=n, p=share))
    return np.concatenate(kinds)


def _apply_anomaly(
    rng: np.random.Generator,
    events: dict[str, np.ndarray],
    brand_of_event: np.ndarray,
    keep: np.ndarray,
    event_type: np.ndarray,
    brand: str,
    start_hour: int,
    hours: int,
    kind: str,
    magnitude: float,
) -> None:
    """A drop removes `magnitude` of the brand's purchases in the window; a spike turns views
    into purchases until there are ≈ `magnitude` extra purchases per purchase. Edits `keep` and
    `event_type` in place."""
    in_window = (
        (brand_of_event == brand)
        & (events["event_time"] // 3600 >= start_hour)
        & (events["event_time"] // 3600 < start_hour + hours)
    )
    if kind == "drop":
        keep &= ~(in_window & (event_type == PURCHASE) & (rng.random(len(keep)) < magnitude))
    else:
        purchases = int((in_window & (event_type == PURCHASE)).sum())
        views = in_window & (event_type == VIEW)
        p = min(1.0, max(purchases, 3) * magnitude / max(1, int(views.sum())))
        event_type[views & (rng.random(len(keep)) < p)] = PURCHASE


# An anomaly's place: brand, first hour (hours since the epoch), hours, drop | spike, magnitude.
_Placement = tuple[str, int, int, str, float]


def _drawn_placements(
    rng: np.random.Generator,
    catalog: _Catalog,
    first_hour: int,
    days: int,
    count: int,
    top_brands: int,
    visible: bool,
) -> Iterator[_Placement]:
    """`count` anomalies drawn at random among the `top_brands` busiest brands. Lazy, so each
    anomaly's draws come right before the draws that apply it (the order every seed's data was
    made with).

    `visible`: what a demo needs to show, instead of a random draw: drops and spikes in turn,
    on the three busiest brands, 3 to 5 hours in the busy part of the day (11:00 to 20:00 UTC),
    one per day from the eighth day on, purchases cut by 85 to 95 % or multiplied 2.5 to 3."""
    # candidates: the busiest brands, so that an anomaly has enough traffic to be detectable
    candidates = catalog.brands_by_volume[:top_brands]
    # leave the first days as clean history for baselines
    earliest = first_hour + min(days - 1, 7) * 24
    latest = first_hour + days * 24 - 6
    for index in range(count):
        if visible:
            brand = str(candidates[index % min(3, len(candidates))])
            hours = int(rng.integers(3, 6))
            day = min(days - 1, 7 + index)
            start_hour = first_hour + day * 24 + int(rng.integers(11, 21 - hours))
        else:
            brand = str(rng.choice(candidates))
            hours = int(rng.integers(2, 7))
            start_hour = int(rng.integers(earliest, max(earliest + 1, latest - hours)))
        if (index % 2 == 0) if visible else (rng.random() < 0.5):
            low, high = (0.85, 0.95) if visible else (0.7, 0.95)
            kind = "drop"
        else:
            low, high = (2.5, 3.0) if visible else (1.5, 3.0)
            kind = "spike"
        yield brand, start_hour, hours, kind, float(np.round(rng.uniform(low, high), 2))


def _planned_placements(catalog: _Catalog, first_hour: int, plan: list[AnomalySpec]) -> Iterator[_Placement]:
    for spec in plan:
        if spec.anomaly_type not in ("drop", "spike"):
            raise ValueError(f"anomaly_type must be drop or spike, not {spec.anomaly_type!r}")
        if not 0 <= spec.start_hour < 24 or spec.hours < 1:
            raise ValueError(f"an anomaly starts at hour 0..23 and lasts at least an hour: {spec}")
        brand = str(catalog.brands_by_volume[spec.brand_rank])
        start_hour = first_hour + spec.day * 24 + spec.start_hour
        yield brand, start_hour, spec.hours, spec.anomaly_type, spec.magnitude


def _inject_anomalies(
    rng: np.random.Generator,
    events: dict[str, np.ndarray],
    catalog: _Catalog,
    start: date,
    days: int,
    count: int,
    top_brands: int = 25,
    visible: bool = False,
    plan: list[AnomalySpec] | None = None,
) -> tuple[dict[str, np.ndarray], list[InjectedAnomaly]]:
    """`plan`'s anomalies, or `count` drawn at random (`_drawn_placements`), applied to the
    events; with their ground truth."""
    if not plan and count <= 0:
        return events, []
    first_hour = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) // 3600
    placements = (
        _planned_placements(catalog, first_hour, plan)
        if plan
        else _drawn_placements(rng, catalog, first_hour, days, count, top_brands, visible)
    )
    brand_of_event = catalog.brand[events["product"]]
    keep = np.ones(len(events["event_time"]), dtype=bool)
    event_type = events["event_type"].copy()
    injected: list[InjectedAnomaly] = []
    for brand, start_hour, hours, kind, magnitude in placements:
        _apply_anomaly(
            rng, events, brand_of_event, keep, event_type, brand, start_hour, hours, kind, magnitude
        )
        window_start = datetime.fromtimestamp(start_hour * 3600, tz=UTC)
        injected.append(
            InjectedAnomaly(brand, window_start.strftime("%Y-%m-%dT%H:00:00Z"), hours, kind, magnitude)
        )
    events = {k: v[keep] for k, v in events.items()}
    events["event_type"] = event_type[keep]
    return events, injected


def _add_duplicates(rng: np.random.Generator, events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    share = np.zeros(len(EVENT_TYPES))
    for t, s in DUPLICATE_SHARE.items():
        share[t] = s
    # duplicating a fraction f of rows makes f/(1+f) of the result duplicates
    p_dup = share / (1 - share)
    dup = rng.random(len(events["event_type"])) < p_dup[events["event_type"]]
    return {k: np.concatenate([v, v[dup]]) for k, v in events.items()}


def _malformed_lines(rng: np.random.Generator, kind: str, when: datetime) -> str:
    ts = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    session = f"0badf00d-0000-4000-8000-{int(rng.integers(0, 2**40)):012x}"
    return {
        "garbage_line": "<<<garbled export line \x7f>>>",
        "short_row": f"{ts},view,5809910,1602943681873052386",
        "bad_timestamp": f"2019-13-45 25:61:00 UTC,view,5809910,1602943681873052386,,runail,4.76,463240011,{session}",
        "non_numeric_price": f"{ts},cart,5809910,1602943681873052386,,runail,four,463240011,{session}",
        "unknown_event_type": f"{ts},wishlist,5809910,1602943681873052386,,runail,4.76,463240011,{session}",
    }[kind]


def generate(
    out_dir: Path | str,
    start: date,
    days: int,
    *,
    seed: int = 42,
    events_per_day: int = DEFAULT_EVENTS_PER_DAY,
    anomalies: int = 0,
    anomaly_top_brands: int = 25,
    visible_anomalies: bool = False,
    anomaly_plan: list[AnomalySpec] | None = None,
    top_brand_share: float = TARGET_TOP_BRAND_SHARE,
    weekly_strength: float = 1.0,
    weekday_conversion_swing: float = 0.0,
    holiday: Holiday | None = None,
    malformed_per_kind: int = 1,
    ground_truth_path: Path | str | None = None,
) -> GenerationSummary:
    """Write Kaggle-format monthly CSVs for `days` days from `start` into `out_dir`.

    Anomalies go to brands among the `anomaly_top_brands` busiest, or where `anomaly_plan`
    puts them. The evaluation's scenario families vary the shop: `top_brand_share` (the
    busiest brand's share of events: how steep the brand curve is), `weekly_strength` (1 =
    the real weekday rhythm, 0 = none, 2 = twice as strong), `weekday_conversion_swing`
    (buying sessions' share moving by weekday, ± this fraction) and `holiday` (days on which
    the whole shop is busier and buys more). The defaults give the same bytes for the same seed
    as before these options existed."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if events_per_day < 10:
        raise ValueError("events_per_day must be at least 10")
    rng = np.random.default_rng(seed)
    n_products = int(np.clip(events_per_day * days / 200, 500, 25_000))
    catalog = _build_catalog(rng, n_products, n_brands=240, top_brand_share=top_brand_share)
    events = _generate_events(
        rng, catalog, start, days, events_per_day, weekly_strength, weekday_conversion_swing, holiday
    )
    events, injected = _inject_anomalies(
        rng,
        events,
        catalog,
        start,
        days,
        anomalies,
        anomaly_top_brands,
        visible=visible_anomalies,
        plan=anomaly_plan,
    )
    events = _add_duplicates(rng, events)

    # keep only the requested days (sessions may run past midnight of the last day)
    first_ts = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    in_range = events["event_time"] < first_ts + days * 86_400
    events = {k: v[in_range] for k, v in events.items()}
    order = np.argsort(events["event_time"], kind="stable")
    events = {k: v[order] for k, v in events.items()}
    n = len(order)

    product = events["product"]
    price_cents = catalog.price_cents[product].copy()
    brand = catalog.brand[product]
    # dirty values seen in the real export: a handful of negative prices, on purchases without brand
    candidates = np.flatnonzero((events["event_type"] == PURCHASE) & (brand == None))
    n_negative = min(len(candidates), max(2, round(n * NEGATIVE_PRICE_RATE)))
    negative = rng.choice(candidates, size=n_negative, replace=False) if n_negative else []
    price_cents[negative] = -np.maximum(price_cents[negative], 100)
    session = events["session"].copy()
    session[rng.random(n) < TARGET_NULL_SESSION] = None

    table = pa.table(
        {
            "event_time": pc.strftime(
                pa.array(events["event_time"], pa.timestamp("s", tz="UTC")),
                format="%Y-%m-%d %H:%M:%S UTC",
            ),
            "event_type": pa.array(np.array(EVENT_TYPES, dtype=object)[events["event_type"]], pa.string()),
            "product_id": pa.array(catalog.product_id[product]),
            "category_id": pa.array(catalog.category_id[product]),
            "category_code": pa.array(catalog.category_code[product], pa.string()),
            "brand": pa.array(brand, pa.string()),
            "price": _format_price(price_cents),
            "user_id": pa.array(events["user_id"]),
            "user_session": pa.array(session, pa.string()),
        }
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    month_keys = np.asarray((events["event_time"] // 86_400).astype("datetime64[D]").astype("datetime64[M]"))
    files: list[str] = []
    malformed = {k: 0 for k in MALFORMED_KINDS}
    rows = 0
    for month in np.unique(month_keys):
        idx = np.flatnonzero(month_keys == month)
        lo, hi = int(idx[0]), int(idx[-1]) + 1  # sorted by time, so a month is a contiguous slice
        y, m = int(str(month)[:4]), int(str(month)[5:7])
        path = out / f"{y}-{calendar.month_abbr[m]}.csv"
        # malformed lines go at random places in the file, one of each kind per `malformed_per_kind`
        kinds = [k for k in MALFORMED_KINDS for _ in range(malformed_per_kind)]
        cut_points = np.sort(rng.integers(lo, hi, size=len(kinds)))
        with open(path, "wb") as fh:
            fh.write((",".join(RAW_COLUMNS) + "\n").encode())
            position = lo
            for kind, cut in zip(kinds, cut_points, strict=True):
                _write_rows(fh, table.slice(position, int(cut) - position))
                when = datetime.fromtimestamp(int(events["event_time"][min(int(cut), hi - 1)]), tz=UTC)
                fh.write((_malformed_lines(rng, kind, when) + "\n").encode())
                malformed[kind] += 1
                position = int(cut)
            _write_rows(fh, table.slice(position, hi - position))
        rows += (hi - lo) + len(kinds)
        files.append(str(path))

    summary = GenerationSummary(files=files, rows=rows, malformed=malformed, anomalies=injected)
    if ground_truth_path is not None:
        write_ground_truth(Path(ground_truth_path), injected)
    return summary


def _write_rows(fh, table: pa.Table) -> None:
    if table.num_rows == 0:
        return
    buffer = io.BytesIO()
    pacsv.write_csv(
        table,
        buffer,
        # the export quotes nothing (no field holds a comma); "none" raises if one ever did
        write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
    )
    fh.write(buffer.getvalue())


def write_ground_truth(path: Path, anomalies: list[InjectedAnomaly]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["brand", "window_start", "hours", "anomaly_type", "magnitude"])
        for a in anomalies:
            writer.writerow([a.brand, a.window_start, a.hours, a.anomaly_type, a.magnitude])
