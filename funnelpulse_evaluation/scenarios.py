"""The anomaly evaluation harness, shared by benchmarks/anomalies.py and the tests.

Scenario families: a shop (the factors that hold for a whole scenario: traffic, how steep the
brand curve is, weekly seasonality) and a seed, from which a plan of anomalies is drawn whose
factors vary anomaly by anomaly (drop or spike, size, duration, hour of day, brand tier, days of
history before it). Each scenario is generated with the sample generator, materialized bronze →
silver → hourly gold → gold_anomalies_hourly_brand with real Dagster runs, and scored at
brand-hours against the injected ground truth, beside the seed's method on the same data.

Scoring (benchmarks/anomalies.py prints it, docs/anomalies.md explains it):
- eligible: brand-hours with at least `min_views` views from the first anomaly day on;
- a true positive is an eligible hour inside an injected anomaly flagged with its type; a flag
  of the other type or outside every anomaly is a false positive;
- an incident (one injected anomaly) is scorable when at least one of its hours is eligible,
  and detected when any of its hours carries a flag of its type;
- time to detect, live: from the incident's first hour to the earliest `detectable_at` of its
  flags (the end of the hour whose evidence first passed); batch: to the daily schedule's run
  after the day of its first flagged hour (01:15 UTC the next day).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zlib
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import DagsterInstance, materialize
from pyspark.sql import functions as F

from funnelpulse_dagster.defs.lakehouse.anomalies import gold_anomalies_hourly_brand
from funnelpulse_dagster.defs.lakehouse.bronze import bronze
from funnelpulse_dagster.defs.lakehouse.gold_hourly import gold_funnel_hourly_brand
from funnelpulse_dagster.defs.lakehouse.silver import silver_events
from funnelpulse_dagster.generator import (
    DEFAULT_EVENTS_PER_DAY,
    TARGET_TOP_BRAND_SHARE,
    AnomalySpec,
    Holiday,
    InjectedAnomaly,
    generate,
)
from funnelpulse_dagster.resources import LakeResource, RawDataResource
from funnelpulse_dagster.resources.spark import SparkResource
from funnelpulse_dagster.rules import CURRENT_HOUR_Z, THRESHOLD
from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND, GOLD_FUNNEL_HOURLY_BRAND
from funnelpulse_dagster.transforms.anomalies.evidence import evidence_for_days, flag
from funnelpulse_evaluation import alternatives, calibration
from funnelpulse_evaluation.scoring import rates

START = date(2019, 10, 1)
FIRST_ANOMALY_DAY = 7  # a week of clean history before the first anomaly
# when the daily schedule (defs/lakehouse/automation.py, "15 1 * * *") judges yesterday
BATCH_RUN_AFTER_MIDNIGHT = timedelta(hours=1, minutes=15)


@dataclass(frozen=True)
class Shop:
    """The factors that hold for a whole scenario."""

    name: str
    traffic: float = 1.0  # × the default day (135 k events)
    top_brand_share: float = TARGET_TOP_BRAND_SHARE  # the busiest brand's share: the curve's steepness
    weekly_strength: float = 1.0  # 1 = the real weekday rhythm of traffic
    weekday_conversion_swing: float = 0.0  # buying sessions' share moving by weekday, ±
    holiday: Holiday | None = None  # a week the whole shop is busier and buys more


# One factor at a time, then several together.
SHOPS = (
    Shop("default"),
    Shop("traffic 0.5x", traffic=0.5),
    Shop("traffic 2x", traffic=2.0),
    Shop("flat brands", top_brand_share=0.035),
    Shop("steep brands", top_brand_share=0.14),
    Shop("no weekly rhythm", weekly_strength=0.0),
    Shop("strong weekly rhythm", weekly_strength=2.5, weekday_conversion_swing=0.15),
    Shop("together: 0.5x, flat, strong weekly", 0.5, 0.035, 2.5, 0.15),
    # three weeks of ordinary history, then a week of 3× traffic and 1.5× conversion in every
    # brand: not an incident of any brand (the plan's incidents go on through it)
    Shop("holiday week", holiday=Holiday(first_day=21)),
)
# Seeds for choosing the detector's rules and parameters, and seeds never used to choose
# anything (the figures a user should trust are the held-out ones).
TUNING_SEEDS = (11, 12)
HELDOUT_SEEDS = (1011, 1012, 1013)

# The levels each anomaly's factors are drawn from, in balanced rotation.
DROP_SIZES = (0.3, 0.5, 0.7, 0.9)  # share of the brand's purchases removed
SPIKE_SIZES = (0.5, 1.0, 2.0)  # extra purchases per purchase: +50 % … +200 % conversion
DURATIONS = (1, 2, 3, 4, 6)
HOURS_OF_DAY = {
    "night 00-05": range(6),
    "morning 06-11": range(6, 12),
    "afternoon 12-17": range(12, 18),
    "evening 18-23": range(18, 24),
}
BRAND_TIERS = {"top 5": range(5), "mid 6th-12th": range(5, 12)}
TIER_ROTATION = ("top 5", "top 5", "mid 6th-12th")  # a third on mid-sized brands


# The detector's two gates (rules.THRESHOLD on a run's score, rules.CURRENT_HOUR_Z on the hour's
# own evidence), tried around the shipped values on the same evidence with --gates: what another
# choice trades, scored as the published alternatives' settings are.
GATE_THRESHOLDS = (4.0, 4.5, 5.0, 5.5, 6.0)
GATE_CURRENT_HOUR_Z = (1.0, 1.5, 2.0)
OURS = "ours (transforms/anomalies/)"


def gate_setting(threshold: float, current_hour_z: float) -> str:
    return f"run score ≥ {threshold}, hour |z| ≥ {current_hour_z}"


SHIPPED_GATES = gate_setting(THRESHOLD, CURRENT_HOUR_Z)

# An incident whose oracle signal (see `incidents`) is under this is out of any detector's
# reach at these volumes: a test that fires at z ≥ 3 raises ≈ 8 false alarms per scenario's
# ≈ 3,000 eligible brand-hours (two directions) for the ≈ 10 hours it would find; at z ≥ 4 the
# expected false alarms drop to ≈ 0.2.
DETECTABLE_SIGNAL = 4.0


def history_level(day: int) -> str:
    return "7-13 days" if day < 14 else "14-27 days" if day < 28 else "28+ days"


@dataclass(frozen=True)
class PlannedAnomaly:
    spec: AnomalySpec
    levels: dict[str, str]  # factor -> level, for the per-factor report


def _rotation(rng: np.random.Generator, levels, n: int) -> list:
    """`levels` repeated to length n, shuffled: each level about equally often."""
    cycled = [levels[i % len(levels)] for i in range(n)]
    return [cycled[i] for i in rng.permutation(n)]


def anomaly_plan(seed: int, days: int, shop: str = "") -> list[PlannedAnomaly]:
    """One anomaly a day from FIRST_ANOMALY_DAY on, drops and spikes in turn; sizes, durations,
    hours of day and brand tiers each rotate through their levels in an order drawn from `seed`
    and the shop's name (independently, so no two factors move together, and each shop of a
    seed gets its own plan, so a factor level is not the same few incidents in every shop). An
    anomaly may run past midnight; two days in a row never hit the same brand."""
    rng = np.random.default_rng([seed, zlib.crc32(shop.encode())])
    anomaly_days = list(range(FIRST_ANOMALY_DAY, days))
    n = len(anomaly_days)
    kinds = ["drop" if i % 2 == 0 else "spike" for i in range(n)]
    drop_sizes = iter(_rotation(rng, DROP_SIZES, kinds.count("drop")))
    spike_sizes = iter(_rotation(rng, SPIKE_SIZES, kinds.count("spike")))
    durations = _rotation(rng, DURATIONS, n)
    hours_of_day = _rotation(rng, list(HOURS_OF_DAY), n)
    tiers = _rotation(rng, TIER_ROTATION, n)
    plan, previous_rank = [], None
    for i, day in enumerate(anomaly_days):
        ranks = [r for r in BRAND_TIERS[tiers[i]] if r != previous_rank]
        rank = int(rng.choice(ranks))
        previous_rank = rank
        size = next(drop_sizes) if kinds[i] == "drop" else next(spike_sizes)
        start_hour = int(rng.choice(HOURS_OF_DAY[hours_of_day[i]]))
        spec = AnomalySpec(rank, day, start_hour, durations[i], kinds[i], size)
        sign = "-" if kinds[i] == "drop" else "+"
        levels = {
            "type": kinds[i],
            "size": f"{kinds[i]} {sign}{round(size * 100)} %",
            "duration": f"{durations[i]} h",
            "hour of day": hours_of_day[i],
            "brand": tiers[i],
            "history": history_level(day),
        }
        plan.append(PlannedAnomaly(spec, levels))
    return plan


@dataclass(frozen=True)
class Scenario:
    shop: Shop
    seed: int
    days: int = 35
    events_per_day: int = DEFAULT_EVENTS_PER_DAY

    @property
    def name(self) -> str:
        return f"{self.shop.name} / seed {self.seed}"


def materialize_days(
    assets: list,
    first: date,
    last: date,
    spark_resource: SparkResource,
    lake: LakeResource,
    raw: Path,
    selection=None,
):
    """One real range run (an ephemeral Dagster instance) of `assets` over the days `first` …
    `last`, reading the exports in `raw`; its result, which must have succeeded."""
    result = materialize(
        assets,
        selection=selection,
        instance=DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
        resources={"spark": spark_resource, "lake": lake, "raw_data": RawDataResource(uri=str(raw))},
    )
    assert result.success
    return result


def materialize_scenario(
    scenario: Scenario, spark_resource: SparkResource, home: Path, plan: list[PlannedAnomaly]
):
    """Generate the scenario and materialize it up to the anomaly table: the anomalies the
    generator injected (in `plan`'s order), hourly gold (brand rows) and the anomaly rows as
    pandas frames. A home that already holds the scenario's hourly gold (a kept work folder) is
    only judged again: the detector runs on the same gold, nothing is generated or built."""
    raw = home / "data_raw"
    shop = scenario.shop
    injected_path = home / "injected.json"
    lake = LakeResource(root=str(home / "tables"))
    last = START + timedelta(days=scenario.days - 1)
    assets = [bronze, silver_events, gold_funnel_hourly_brand, gold_anomalies_hourly_brand]
    built = injected_path.exists()
    if built:
        injected = [InjectedAnomaly(**a) for a in json.loads(injected_path.read_text())]
    else:
        injected = generate(
            raw,
            START,
            scenario.days,
            seed=scenario.seed,
            events_per_day=round(scenario.events_per_day * shop.traffic),
            anomaly_plan=[p.spec for p in plan],
            top_brand_share=shop.top_brand_share,
            weekly_strength=shop.weekly_strength,
            weekday_conversion_swing=shop.weekday_conversion_swing,
            holiday=shop.holiday,
            ground_truth_path=home / "truth.csv",
        ).anomalies
    materialize_days(
        assets,
        START,
        last,
        spark_resource,
        lake,
        raw,
        selection=[gold_anomalies_hourly_brand] if built else None,
    )
    injected_path.write_text(json.dumps([asdict(a) for a in injected]))
    spark = spark_resource.spark_session
    gold = (
        lake.read(spark, GOLD_FUNNEL_HOURLY_BRAND)
        .filter("brand IS NOT NULL")
        .select("brand", "window_start", "views", "purchases", "view_sessions", "purchase_sessions")
        .toPandas()
    )
    flags = (
        lake.read(spark, GOLD_ANOMALIES_HOURLY_BRAND)
        .select("brand", "window_start", "anomaly_type", "detectable_at", "root_cause_hints")
        .toPandas()
    )
    assert (flags["root_cause_hints"].map(len) > 0).all(), "every anomaly carries a hint"
    return (
        injected,
        gold,
        flags.drop(columns="root_cause_hints").rename(columns={"anomaly_type": "flag"}),
    )


def seed_flags(gold: pd.DataFrame) -> pd.DataFrame:
    """The seed's method: z of the hour's rate against all of the brand's hours (leaky)."""
    g = gold[gold["views"] > 0].copy()
    g["rate"] = g["purchases"] / g["views"]
    g["hour_of_day"] = g["window_start"].dt.hour
    by_brand = g.groupby("brand")["rate"]
    by_hour = g.groupby(["brand", "hour_of_day"])["rate"]
    z_brand = (g["rate"] - by_brand.transform("mean")) / by_brand.transform("std")
    z_hour = (g["rate"] - by_hour.transform("mean")) / by_hour.transform("std")
    drop = (z_brand <= -2) | (z_hour <= -2)
    spike = (z_brand >= 2) | (z_hour >= 2)
    g["flag"] = None
    g.loc[spike, "flag"] = "spike"
    g.loc[drop, "flag"] = "drop"
    return g[g["flag"].notna()][["brand", "window_start", "flag"]]


def truth_hours(injected: list[InjectedAnomaly]) -> pd.DataFrame:
    """One row per injected brand-hour: incident number, brand, hour, type."""
    rows = [
        {
            "incident": incident,
            "brand": a.brand,
            "window_start": datetime.strptime(a.window_start, "%Y-%m-%dT%H:%M:%SZ") + timedelta(hours=h),
            "truth": a.anomaly_type,
        }
        for incident, a in enumerate(injected)
        for h in range(a.hours)
    ]
    return pd.DataFrame(rows, columns=["incident", "brand", "window_start", "truth"])


def hour_counts(eligible: pd.DataFrame, truth: pd.DataFrame, flags: pd.DataFrame) -> dict:
    """True positives, false positives and false negatives over `eligible` brand-hours; a flag
    counts only with the injected anomaly's type."""
    frame = eligible.merge(
        truth[["brand", "window_start", "truth"]], on=["brand", "window_start"], how="left"
    ).merge(flags[["brand", "window_start", "flag"]], on=["brand", "window_start"], how="left")
    positive, flagged = frame["truth"].notna(), frame["flag"].notna()
    right = positive & flagged & (frame["truth"] == frame["flag"])
    return {
        "tp": int(right.sum()),
        "fp": int((flagged & ~right).sum()),
        "fn": int((positive & ~right).sum()),
    }


def usual_purchase_sessions(gold: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """For each injected brand-hour, the brand's mean purchasing sessions in that hour of day
    over the 7 days before: what the hour would have had without the anomaly."""
    week = []
    for back in range(1, 8):
        week.append(
            truth[["brand", "window_start"]].assign(earlier=truth["window_start"] - timedelta(days=back))
        )
    earlier = pd.concat(week).merge(
        gold[["brand", "window_start", "purchase_sessions"]].rename(columns={"window_start": "earlier"}),
        on=["brand", "earlier"],
        how="left",
    )
    earlier["purchase_sessions"] = earlier["purchase_sessions"].fillna(0)
    usual = earlier.groupby(["brand", "window_start"])["purchase_sessions"].mean()
    return truth.merge(usual.rename("usual").reset_index(), on=["brand", "window_start"], how="left")["usual"]


def oracle_signal(usual: float, observed: float, anomaly_type: str) -> float:
    """An incident's signal (see `incidents`): |observed − usual| / √usual purchasing sessions
    in the anomaly's direction, 0 if they moved the other way."""
    direction = 1.0 if anomaly_type == "spike" else -1.0
    return max(0.0, direction * (observed - usual) / max(usual, 1.0) ** 0.5)


def signal_level(z: float) -> str:
    return "< 2" if z < 2 else "2-4" if z < 4 else "4-6" if z < 6 else "6+"


def incidents(
    plan: list[PlannedAnomaly],
    truth: pd.DataFrame,
    eligible: pd.DataFrame,
    ours: pd.DataFrame,
    seed: pd.DataFrame,
    gold: pd.DataFrame,
) -> list[dict]:
    """Per injected anomaly: its factor levels, eligible hours, hours found by each method,
    (ours) the time to detect live and in batch, and its signal: the z an oracle would reach
    that knew the incident's hours and their usual purchasing sessions Λ (the brand's mean in
    the same hours over the week before), |observed − Λ| / √Λ in the anomaly's direction (0 if
    the sessions moved the other way). It is the realized effect in sessions: a drop removes
    purchase *events*, and a session that bought several items often keeps one, so sessions
    move less than the drop's size. Under ≈ 4 no test can find an incident without raising
    false alarms about as often (DETECTABLE_SIGNAL)."""
    observed = truth.merge(
        gold[["brand", "window_start", "purchase_sessions"]], on=["brand", "window_start"], how="left"
    )
    truth = truth.assign(
        usual=usual_purchase_sessions(gold, truth).to_numpy(),
        observed=observed["purchase_sessions"].fillna(0).to_numpy(),
    )
    eligible_keys = eligible.assign(eligible=True)
    hours = truth.merge(eligible_keys, on=["brand", "window_start"], how="left")
    hours["eligible"] = hours["eligible"].notna()
    hours = hours.merge(ours, on=["brand", "window_start"], how="left")
    hours["ours"] = hours["flag"] == hours["truth"]
    hours = hours.drop(columns="flag").merge(seed, on=["brand", "window_start"], how="left")
    hours["seed"] = hours["flag"] == hours["truth"]
    out = []
    for incident, p in enumerate(plan):
        mine = hours[hours["incident"] == incident]
        start = mine["window_start"].min()
        found = mine[mine["ours"]]
        signal = oracle_signal(float(mine["usual"].sum()), float(mine["observed"].sum()), p.spec.anomaly_type)
        row = {
            **p.levels,
            "signal": signal_level(signal),
            "signal_z": round(signal, 2),
            "brand_rank": p.spec.brand_rank,
            "window_start": start,
            "hours": p.spec.hours,
            "eligible_hours": int(mine["eligible"].sum()),
            "found_hours": int((mine["eligible"] & mine["ours"]).sum()),
            "seed_found_hours": int((mine["eligible"] & mine["seed"]).sum()),
            "detected": bool(len(found)),
            "seed_detected": bool(mine["seed"].any()),
            "live_hours_to_detect": None,
            "batch_hours_to_detect": None,
        }
        if len(found):
            live = pd.Timestamp(found["detectable_at"].min())
            batch_run = (
                pd.Timestamp(found["window_start"].min().normalize())
                + timedelta(days=1)
                + BATCH_RUN_AFTER_MIDNIGHT
            )
            row["live_hours_to_detect"] = (live - start).total_seconds() / 3600
            row["batch_hours_to_detect"] = (batch_run - start).total_seconds() / 3600
        out.append(row)
    return out


def false_flags(eligible: pd.DataFrame, truth: pd.DataFrame, flags: pd.DataFrame) -> list[dict]:
    """The flags on eligible hours that match no injected hour of their type, each with how far
    (hours) it is from the nearest injected hour of the same brand (None: the brand had none)."""
    frame = eligible.merge(flags, on=["brand", "window_start"]).merge(
        truth[["brand", "window_start", "truth"]], on=["brand", "window_start"], how="left"
    )
    wrong = frame[frame["truth"] != frame["flag"]]
    out = []
    for row in wrong.itertuples():
        same_brand = truth.loc[truth["brand"] == row.brand, "window_start"]
        gap = (same_brand - row.window_start).abs().min() if len(same_brand) else None
        out.append(
            {
                "brand": row.brand,
                "window_start": row.window_start,
                "flag": row.flag,
                "hours_from_injected": None if gap is None else gap.total_seconds() / 3600,
            }
        )
    return out


def run_scenario(
    scenario: Scenario,
    spark_resource: SparkResource,
    work: Path,
    min_views: int = 50,
    plan: list[PlannedAnomaly] | None = None,
    calibrate: bool = False,
    gates: bool = False,
) -> dict:
    """Generate, materialize and score one scenario; `plan` replaces the seed's anomaly plan.
    With `calibrate`, also how the detector's single-hour evidence behaves on the ordinary hours
    (funnelpulse_evaluation/calibration.py); with `gates`, our detector at every gate setting
    (`gate_sweep`)."""
    home = work / f"{scenario.shop.name.split(':')[0].replace(' ', '_')}-{scenario.seed}"
    plan = plan or anomaly_plan(scenario.seed, scenario.days, scenario.shop.name)
    injected, gold, ours = materialize_scenario(scenario, spark_resource, home, plan)
    truth = truth_hours(injected)
    judged_from = pd.Timestamp(START + timedelta(days=FIRST_ANOMALY_DAY))
    eligible = gold[(gold["views"] >= min_views) & (gold["window_start"] >= judged_from)][
        ["brand", "window_start"]
    ]
    seed = seed_flags(gold)
    found = incidents(plan, truth, eligible, ours, seed, gold)
    # the same scoring on the incidents within reach: hours of weaker ones count neither way
    strong = truth["incident"].isin([n for n, i in enumerate(found) if i["signal_z"] >= DETECTABLE_SIGNAL])
    weak_hours = truth.loc[~strong, ["brand", "window_start"]]
    outside_weak = eligible.merge(weak_hours, on=["brand", "window_start"], how="left", indicator=True)
    eligible_strong = outside_weak[outside_weak["_merge"] == "left_only"][["brand", "window_start"]]

    def scored(flags: pd.DataFrame) -> dict:
        return {
            "all": rates(hour_counts(eligible, truth, flags)),
            "within_reach": rates(hour_counts(eligible_strong, truth[strong], flags)),
        }

    published = [
        {"method": method, "setting": setting, **scored(flags)}
        for method, setting, flags in kept_alternative_flags(gold, judged_from, home)
    ]
    result = {
        "scenario": scenario.name,
        "shop": asdict(scenario.shop),
        "seed": scenario.seed,
        "eligible_brand_hours": len(eligible),
        "positive_brand_hours": int(eligible.merge(truth, on=["brand", "window_start"]).shape[0]),
        "ours": rates(hour_counts(eligible, truth, ours)),
        "seed_method": rates(hour_counts(eligible, truth, seed)),
        "ours_within_reach": rates(hour_counts(eligible_strong, truth[strong], ours)),
        "seed_method_within_reach": rates(hour_counts(eligible_strong, truth[strong], seed)),
        "incidents": found,
        "false_flags": false_flags(eligible, truth, ours),
        "alternatives": published,
    }
    if calibrate:
        evidence = hour_evidence(spark_resource, home, scenario.days)
        result["calibration"] = calibration.calibration(calibration.ordinary_hours(evidence, truth, eligible))
    if gates:
        result["gate_sweep"], result["gate_sweep_reproduces_detector"] = gate_sweep(
            spark_resource, home, scenario.days, ours, scored
        )
    return result


def _judged_evidence(spark_resource: SparkResource, home: Path, days: int):
    """The detector's evidence for every brand-hour of the judged days (and the day before, for
    its last hours' runs), as a batch run computes it (transforms/anomalies `evidence_for_days`),
    and the first judged day."""
    spark = spark_resource.spark_session
    gold = LakeResource(root=str(home / "tables")).read(spark, GOLD_FUNNEL_HOURLY_BRAND)
    judged = [START + timedelta(days=day) for day in range(FIRST_ANOMALY_DAY, days)]
    return evidence_for_days(gold, judged), judged[0]


def hour_evidence(spark_resource: SparkResource, home: Path, days: int) -> pd.DataFrame:
    """The detector's evidence for every brand-hour of the judged days: brand, window_start,
    hour_of_day, z_hour, phi."""
    evidence, first = _judged_evidence(spark_resource, home, days)
    return (
        evidence.filter(F.col("window_date") >= F.lit(first))
        .select("brand", "window_start", "hour_of_day", "z_hour", "phi")
        .toPandas()
    )


def gate_sweep(
    spark_resource: SparkResource, home: Path, days: int, ours: pd.DataFrame, scored
) -> tuple[list[dict], bool]:
    """Our detector at every gate setting (GATE_THRESHOLDS × GATE_CURRENT_HOUR_Z) on the
    scenario's evidence, each `scored` as a published alternative's setting is, and whether the
    shipped gates flag exactly the hours the detector's own runs wrote (the sweep judges every
    day at once from the same evidence: it must, or its other settings say nothing).

    One judgement at the loosest gates serves every setting: an hour passes a stricter run
    threshold exactly when its strongest covering run (the flag's `score`) reaches it, and the
    hour's own gate reads its `z_hour`, whose sign also fixes the flag's type."""
    evidence, first = _judged_evidence(spark_resource, home, days)
    loosest = (
        flag(evidence, min(GATE_THRESHOLDS), min(GATE_CURRENT_HOUR_Z))
        .filter(F.col("window_date") >= F.lit(first))
        .select("brand", "window_start", F.col("anomaly_type").alias("flag"), "score", "z_hour")
        .toPandas()
    )
    sweep, shipped = [], None
    for threshold in GATE_THRESHOLDS:
        for current_hour_z in GATE_CURRENT_HOUR_Z:
            flags = loosest[(loosest["score"] >= threshold) & (loosest["z_hour"].abs() >= current_hour_z)]
            setting = gate_setting(threshold, current_hour_z)
            sweep.append({"method": OURS, "setting": setting, **scored(flags)})
            if setting == SHIPPED_GATES:
                shipped = flags

    def keys(frame: pd.DataFrame) -> set:
        return set(zip(frame["brand"], pd.to_datetime(frame["window_start"]), frame["flag"], strict=True))

    return sweep, shipped is not None and keys(shipped) == keys(ours)


def alternative_flags(gold: pd.DataFrame, judged_from: pd.Timestamp):
    """(method, setting, flags) of every published alternative at every setting it is tried at
    (alternatives.SETTINGS)."""
    residuals = alternatives.quasi_poisson_residuals(gold, judged_from)
    for threshold in alternatives.SETTINGS["quasi-Poisson GLM"]["threshold"]:
        flags = alternatives.flags_beyond(residuals, residuals["residual"], threshold)
        yield "quasi-Poisson GLM", f"residual beyond ±{threshold}", flags
    series = alternatives.shesd_residuals(gold, judged_from)
    for alpha in alternatives.SETTINGS["S-H-ESD"]["alpha"]:
        yield "S-H-ESD", f"α = {alpha}", alternatives.shesd_flags(gold, judged_from, alpha, residuals=series)


def kept_alternative_flags(gold: pd.DataFrame, judged_from: pd.Timestamp, home: Path) -> list:
    """`alternative_flags`, kept in the scenario's home: they depend only on its hourly gold and
    the alternatives' code, so a detector change judged again on the same gold (a kept work
    folder) does not fit them again. Kept under a digest of both; anything else fits afresh."""
    digest = hashlib.sha256()
    ordered = gold.sort_values(["brand", "window_start"], ignore_index=True)
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    digest.update(Path(alternatives.__file__).read_bytes())
    digest.update(inspect.getsource(alternative_flags).encode())
    digest.update(str(judged_from).encode())
    kept = home / f"alternative_flags-{digest.hexdigest()[:16]}.json"
    if kept.exists():
        return [
            (
                entry["method"],
                entry["setting"],
                pd.DataFrame(entry["flags"], columns=alternatives.FLAG_COLUMNS).astype(
                    {"window_start": "datetime64[ns]"}
                ),
            )
            for entry in json.loads(kept.read_text())
        ]
    found = list(alternative_flags(gold, judged_from))
    for stale in home.glob("alternative_flags-*.json"):
        stale.unlink()
    kept.write_text(
        json.dumps(
            [
                {
                    "method": method,
                    "setting": setting,
                    "flags": flags.astype({"window_start": str}).to_dict("records"),
                }
                for method, setting, flags in found
            ]
        )
    )
    return found


FACTORS = ("type", "size", "duration", "hour of day", "brand", "history", "signal")


def summary(results: list[dict]) -> dict:
    """Overall and per-shop precision / recall / F1 (hours), and per anomaly factor level the
    incidents detected, hour recall of both methods and the median times to detect."""

    def total(rows, method):
        return rates({k: sum(r[method][k] for r in rows) for k in ("tp", "fp", "fn")})

    by_shop = {}
    for r in results:
        by_shop.setdefault(r["shop"]["name"], []).append(r)
    incidents_all = pd.DataFrame([i for r in results for i in r["incidents"]])
    scorable = incidents_all[incidents_all["eligible_hours"] > 0]
    unscorable = incidents_all[incidents_all["eligible_hours"] == 0]
    per_level = []
    for factor in (f for f in FACTORS if f in incidents_all):
        for level, group in scorable.groupby(factor, sort=True):
            eligible = int(group["eligible_hours"].sum())
            per_level.append(
                {
                    "factor": factor,
                    "level": level,
                    "incidents": len(group),
                    "detected": int(group["detected"].sum()),
                    "eligible_hours": eligible,
                    "recall": group["found_hours"].sum() / eligible if eligible else 0.0,
                    "seed_recall": group["seed_found_hours"].sum() / eligible if eligible else 0.0,
                    "live_hours_to_detect_median": _median(group["live_hours_to_detect"]),
                    "batch_hours_to_detect_median": _median(group["batch_hours_to_detect"]),
                }
            )
        for level, group in unscorable.groupby(factor, sort=True):
            per_level.append(
                {
                    "factor": factor,
                    "level": level,
                    "unscorable_incidents": len(group),
                    "detected": int(group["detected"].sum()),
                }
            )
    found = incidents_all[incidents_all["detected"]]
    methods = ("ours", "seed_method", "ours_within_reach", "seed_method_within_reach")
    return {
        "overall": {m: total(results, m) for m in methods if all(m in r for r in results)},
        "by_shop": {
            name: {m: total(rows, m) for m in methods if all(m in r for r in rows)}
            for name, rows in by_shop.items()
        },
        "by_level": per_level,
        "time_to_detect": {
            "incidents_detected": len(found),
            "live_median_hours": _median(found["live_hours_to_detect"]) if len(found) else None,
            "live_p90_hours": float(found["live_hours_to_detect"].quantile(0.9)) if len(found) else None,
            "batch_median_hours": _median(found["batch_hours_to_detect"]) if len(found) else None,
            "batch_p90_hours": float(found["batch_hours_to_detect"].quantile(0.9)) if len(found) else None,
        },
    }


def _median(values: pd.Series):
    values = values.dropna()
    return float(values.median()) if len(values) else None
