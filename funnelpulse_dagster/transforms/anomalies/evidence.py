"""Evidence and flags: each judged hour's deviation from its baseline, runs of hours that
accumulate it, the flags, and the report's baseline band."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import (
    BAND_Z,
    CURRENT_HOUR_Z,
    MAX_RUN_HOURS,
    MIN_EVIDENCE_VIEWS,
    MIN_VIEWS,
    SEVERITY_THRESHOLDS,
    SHOP_DEPARTURE_Z,
    SHOP_HOURS,
    SHOP_MAX_WEIGHT,
    SHOP_MIN_BRANDS,
    SHOP_MIN_SESSIONS,
    THRESHOLD,
)
from funnelpulse_dagster.transforms.anomalies.baselines import (
    baselines,
    count_at_z,
    count_z,
    dispersion,
    history_for_days,
    with_time_keys,
    without_outliers,
)
from funnelpulse_dagster.transforms.anomalies.plan import computed


def with_shop_factor(scored: DataFrame) -> DataFrame:
    """Adds `shop_factor`: how far the rest of the shop converts above or below its baselines
    in the last SHOP_HOURS hours. Each brand's ratio there is its purchasing sessions against
    what its baselines expect. A brand's factor is the weighted median of the ratios of the
    other brands that expect at least SHOP_MIN_SESSIONS there, weighted by their expected
    sessions but none by more than SHOP_MAX_WEIGHT of the hour's; it is 1 when fewer than
    SHOP_MIN_BRANDS such brands remain.

    Why these brands: shrunk towards 1, the many small brands would hold the median below a real
    shop-wide lift, which shows as spikes of the busiest brand, whose evidence is strongest;
    taken as they are, a night's small brands with no purchase in three hours would put the
    median at 0. Why the cap and the count: at night only a few brands expect that many, and
    the busiest of them would be the median by itself, so its own incident would move every
    other brand's expectation. A holiday week lifts every brand together and moves the median;
    a brand's own incident is not among its median, so it cannot lower its own expectation (it
    moves the other brands' factors a little, by its capped weight). It looks back only, so a
    live judge computes the factor the batch one does."""
    expected = F.when(F.col("p_base").isNotNull(), F.col("_n") * F.col("p_base"))
    observed = F.when(F.col("p_base").isNotNull(), F.col("_x"))
    recent = Window.partitionBy("brand").orderBy("hour_index").rangeBetween(-(SHOP_HOURS - 1), 0)
    # the median's weight: the expected sessions, capped at a share of the hour's in the median;
    # NULL for a brand not in it
    in_median = F.col("_bl") >= SHOP_MIN_SESSIONS
    cap = F.sum(F.when(in_median, F.col("_bl"))).over(Window.partitionBy("hour_index")) * SHOP_MAX_WEIGHT
    brands = computed(  # read twice (the hour's ratios, each brand's own weight): computed once
        scored.select(
            "hour_index",
            "brand",
            F.sum(observed).over(recent).alias("_bx"),
            F.sum(expected).over(recent).alias("_bl"),
        )
        .filter(F.col("_bl") > 0)
        .withColumn("_weight", F.when(in_median, F.least(F.col("_bl"), cap)))
    )
    ratio = F.struct(
        (F.col("_bx") / F.col("_bl")).alias("ratio"),
        F.col("_weight").alias("weight"),
        F.col("brand").alias("brand"),
    )
    per_hour = brands.groupBy("hour_index").agg(
        F.array_sort(F.collect_list(F.when(F.col("_weight").isNotNull(), ratio))).alias("_rs"),
        F.sum("_bl").alias("_total"),
        F.sum("_bx").alias("_total_x"),
        F.sum("_weight").alias("_weights"),
        F.count("_weight").alias("_measured"),
    )
    own = brands.select(
        "hour_index",
        "brand",
        F.col("_bl").alias("_own"),
        F.col("_bx").alias("_own_x"),
        F.col("_weight").alias("_own_weight"),
    )
    others_total = F.col("_total") - F.coalesce("_own", F.lit(0.0))
    others_x = F.col("_total_x") - F.coalesce("_own_x", F.lit(0.0))
    others_weight = F.coalesce("_weights", F.lit(0.0)) - F.coalesce("_own_weight", F.lit(0.0))
    others_measured = F.col("_measured") - F.col("_own_weight").isNotNull().cast("long")
    # how far the other brands' pooled sessions are from their expectation, in Poisson sd: an
    # ordinary hour's median wanders by a few per cent, which would only add noise to every
    # brand's expectation; the shop moves each brand's expectation only beyond that noise
    departure = (others_x - others_total) / F.sqrt(F.greatest(others_total, F.lit(1.0)))
    # the weighted median of the other brands: the first ratio (in order) at which their
    # running weight reaches half of theirs
    median = F.aggregate(
        F.col("_rs"),
        F.struct(F.lit(0.0).alias("run"), F.lit(None).cast("double").alias("median")),
        lambda acc, r: F.when(r["brand"] == F.col("brand"), acc).otherwise(
            F.struct(
                (acc["run"] + r["weight"]).alias("run"),
                F.when(acc["median"].isNull() & (acc["run"] + r["weight"] >= others_weight / 2), r["ratio"])
                .otherwise(acc["median"])
                .alias("median"),
            )
        ),
    )["median"]
    keys = scored.select("hour_index", "brand").distinct()
    # computed apart: the detector's plan nests close to what a Spark Connect client can send
    factors = computed(
        keys.join(per_hour, "hour_index")
        .join(own, ["hour_index", "brand"], "left")
        .select(
            "hour_index",
            "brand",
            F.when(
                (F.abs(departure) >= SHOP_DEPARTURE_Z) & (others_measured >= SHOP_MIN_BRANDS), median
            ).alias("shop_factor"),
        )
    )
    return scored.join(factors, ["hour_index", "brand"], "left").withColumn(
        "shop_factor", F.coalesce("shop_factor", F.lit(1.0))
    )


def hourly_evidence(judged: DataFrame, base: DataFrame, phi: DataFrame) -> DataFrame:
    """Each judged brand-hour with its expected rate (the brand's baselines times the shop's
    factor, `with_shop_factor`), its own z and the accumulated scores. A brand without any
    history has no baseline, and its hours carry no evidence."""
    with_baselines = computed(  # read twice (the shop's factor, the evidence): computed once
        judged.join(base, ["judged_date", "brand", "hour_of_day", "weekday"], "left")
        .join(phi, ["judged_date", "brand"], "left")
        .withColumn("phi", F.coalesce("phi", F.lit(1.0)))
    )
    has_evidence = (F.col("views") >= MIN_EVIDENCE_VIEWS) & F.col("p_base").isNotNull()
    scored = (
        with_baselines.transform(with_shop_factor)
        # the hour's expectation: the brand's baselines moved with the rest of the shop
        .withColumns(
            {
                "p_base": F.col("p_base") * F.col("shop_factor"),
                "p_event": F.col("p_event") * F.col("shop_factor"),
            }
        )
        .withColumns(
            {
                "expected_purchase_sessions": F.col("_n") * F.col("p_base"),
                "expected_purchases": F.col("views") * F.col("p_event"),
            }
        )
        # the counts the evidence reads: an hour too thin to judge, or of a brand without
        # history, adds nothing to a run
        .withColumns(
            {
                "_ev_x": F.when(has_evidence, F.col("_x")).otherwise(F.lit(0)),
                "_ev_mean": F.when(has_evidence, F.col("expected_purchase_sessions")).otherwise(F.lit(0.0)),
            }
        )
        # the hour's own evidence: the run of one hour (0 where the hour adds nothing)
        .withColumn("z_hour", count_z(F.col("_ev_x"), F.col("_ev_mean")) / F.sqrt("phi"))
    )
    by_brand = Window.partitionBy("brand").orderBy("hour_index")

    def run_z(k: int) -> Column:
        # one tail for the run's pooled counts, not a sum of its hours' z: a sustained drop of
        # a small brand is a few sessions short every hour, each hour's skewed tail says little,
        # and the run's total is as far below its expectation as the tail of its total says
        run = by_brand.rangeBetween(-(k - 1), 0)
        return count_z(F.sum("_ev_x").over(run), F.sum("_ev_mean").over(run)) / F.sqrt("phi")

    # a run of one hour is the hour's own z
    runs = {1: F.col("z_hour")} | {k: run_z(k) for k in range(2, MAX_RUN_HOURS + 1)}
    s = [F.col(f"_s{k}") for k in runs]
    return (
        scored.withColumns({f"_s{k}": column for k, column in runs.items()})
        .withColumns(
            {
                "run_scores": F.array(*s),  # S_1 .. S_MAX_RUN_HOURS ending at this hour
                "drop_score": -F.least(*s),
                "spike_score": F.greatest(*s),
            }
        )
        .withColumns(
            {
                "drop_hours": F.array_position(F.array(*[-c for c in s]), F.col("drop_score")).cast("int"),
                "spike_hours": F.array_position(F.array(*s), F.col("spike_score")).cast("int"),
            }
        )
        .drop(*[f"_s{k}" for k in runs], "_ev_x", "_ev_mean")
    )


def _nearby_runs() -> Column:
    """Every run ending within MAX_RUN_HOURS − 1 hours of this one, as struct(last_hour, k,
    score) with score the signed S_k: collected once, read by both kinds' `_covering_run`."""
    around = (
        Window.partitionBy("brand")
        .orderBy("hour_index")
        .rangeBetween(-(MAX_RUN_HOURS - 1), MAX_RUN_HOURS - 1)
    )
    return F.flatten(
        F.collect_list(
            F.transform(
                F.col("run_scores"),
                lambda s, i: F.struct(
                    F.col("hour_index").alias("last_hour"), (i + 1).alias("k"), s.alias("score")
                ),
            )
        ).over(around)
    )


def _covering_run(kind: str, threshold: float) -> Column:
    """The strongest run of `kind` (drop | spike) that passed `threshold`, covers this hour and
    is not diluted by it: its own, or one ending up to MAX_RUN_HOURS − 1 hours later on the same
    day, as struct(score, hours, first_known_hour); NULL when there is none. `first_known_hour`
    is the hour_index at which the earliest of those runs ends: the hour whose evidence first
    made this hour a flag.

    The first hours of a drop rarely pass on their own (evidence needs two or three hours to
    add up), but once the run through them passes they are part of the same incident. Only runs
    of the same day count, so a day's verdicts never depend on a later day; a run that began the
    day before flags only its hours of the judged day.

    A run is *diluted* by an hour when a part of the run without that hour scores higher: a
    strong incident at 12:00–13:00 lifts the run 12:00–15:00 over the threshold, but
    12:00–13:00 alone scores higher, so 14:00 and 15:00 (the run's ordinary edge) are not part
    of it. Whether a run is diluted depends on its own hours only, so a judge that sees every
    closed hour flags the hour as soon as its run ends, as before."""
    ahead = Window.partitionBy("brand").orderBy("hour_index").rangeBetween(0, MAX_RUN_HOURS - 1)
    score, hours = F.col(f"{kind}_score"), F.col(f"{kind}_hours")
    sign = -1.0 if kind == "drop" else 1.0
    passed_runs = F.collect_list(
        F.when(
            score >= threshold,
            F.struct(
                score.alias("score"),
                hours.alias("hours"),
                (F.col("hour_index") - hours + 1).alias("first_hour"),
                F.col("window_date").alias("day"),
                F.col("hour_index").alias("last_hour"),
            ),
        )
    ).over(ahead)
    hour = F.col("hour_index")

    def diluted(run: Column) -> Column:
        # a part of `run` that leaves this hour out (wholly before it or wholly after) scores higher
        return F.exists(
            F.col("_nearby_runs"),
            lambda part: (
                (part["last_hour"] - part["k"] + 1 >= run["first_hour"])
                & (part["last_hour"] <= run["last_hour"])
                & ((part["last_hour"] < hour) | (part["last_hour"] - part["k"] + 1 > hour))
                & (F.lit(sign) * part["score"] > run["score"])
            ),
        )

    covering = F.filter(
        passed_runs,
        lambda run: (run["first_hour"] <= hour) & (run["day"] == F.col("window_date")) & ~diluted(run),
    )
    best = F.array_max(covering)  # structs order by their first field, the score
    return F.struct(
        best["score"].alias("score"),
        best["hours"].alias("hours"),
        F.array_min(F.transform(covering, lambda run: run["last_hour"])).alias("first_known_hour"),
    )


def flag(
    evidence: DataFrame, threshold: float = THRESHOLD, current_hour_z: float = CURRENT_HOUR_Z
) -> DataFrame:
    """The anomalous brand-hours, with type, score, severity and the seed's columns.

    An hour is flagged when it has at least MIN_VIEWS views, deviates by itself (|z_hour| ≥
    `current_hour_z`, so an hour after an anomaly ends is not flagged for its predecessors) and a
    run covering it passed `threshold`: the run ending at it, or a later run of the same day
    that reaches back over it, and no part of that run without the hour scores higher
    (`_covering_run`). `score` and `evidence_hours` are that run's,
    the strongest when several cover the hour. `detectable_at` is the end of the hour whose
    evidence first made this hour a flag: a judge that sees every closed hour (the live path)
    can flag it then, and no earlier (a run ending at hour u needs only hours up to u, and a
    day's baselines only earlier days). The gates default to the shipped ones (rules.py); the
    evaluation tries others on the same evidence (funnelpulse_evaluation/scenarios.py)."""
    scored = evidence.withColumn("_nearby_runs", _nearby_runs()).withColumns(
        {"_drop_run": _covering_run("drop", threshold), "_spike_run": _covering_run("spike", threshold)}
    )
    traffic = F.col("views") >= MIN_VIEWS
    is_drop = traffic & (F.col("z_hour") <= -current_hour_z) & F.col("_drop_run.score").isNotNull()
    is_spike = traffic & (F.col("z_hour") >= current_hour_z) & F.col("_spike_run.score").isNotNull()
    run = F.when(is_drop, F.col("_drop_run")).otherwise(F.col("_spike_run"))
    rate = F.col("conversion_rate")
    z_brand = (rate - F.col("seed_mean_brand")) / F.nullif(F.col("seed_std_brand"), F.lit(0.0))
    z_brand_hour = (rate - F.col("seed_mean_hour")) / F.nullif(F.col("seed_std_hour"), F.lit(0.0))
    score = run["score"]
    return (
        scored.filter(is_drop | is_spike)
        .drop("run_scores", "_nearby_runs")
        .withColumns(
            {
                "anomaly_type": F.when(is_drop, F.lit("drop")).otherwise(F.lit("spike")),
                "score": score,
                "evidence_hours": run["hours"],
                "detectable_at": F.timestamp_seconds((run["first_known_hour"] + 1) * 3600),
                "severity": _severity(score),
                "expected_conversion_rate": F.col("p_event"),
                "expected_session_conversion_rate": F.col("p_base"),
                "z_brand": z_brand,
                "z_brand_hour": z_brand_hour,
                "is_drop_anomaly": F.coalesce((z_brand <= -2) | (z_brand_hour <= -2), F.lit(False)),
                "is_spike_anomaly": F.coalesce((z_brand >= 2) | (z_brand_hour >= 2), F.lit(False)),
            }
        )
    )


def evidence_for_days(gold: DataFrame, judged_days: list) -> DataFrame:
    """Every brand-hour of `judged_days` (and the day before) with its baseline and evidence,
    from hourly-brand gold holding at least those days and the LOOKBACK_DAYS + 1 before the
    first (fewer at the start of the data is fine: the baselines then rest on what history
    there is). Rows without a brand are not judged."""
    spark = gold.sparkSession
    keyed = with_time_keys(gold.filter(F.col("brand").isNotNull()))
    first, last = min(judged_days), max(judged_days)
    # the day before the first judged day is judged too, for its last hours' evidence
    days = spark.sql(
        f"SELECT explode(sequence(date_sub(DATE'{first.isoformat()}', 1), DATE'{last.isoformat()}')) AS judged_date"
    )
    # history (read three times) and the baselines (twice) are computed once, their lineage cut:
    # the whole detector as one plan nests deeper than a Spark Connect client can send
    # (protobuf's 100-level limit), and an uncut plan is re-planned at every use
    history = computed(history_for_days(keyed, days))
    base = computed(baselines(without_outliers(history, baselines(history))))
    phi = dispersion(history, base)
    judged = keyed.join(days, keyed["window_date"] == days["judged_date"])
    return hourly_evidence(judged, base, phi)


def with_baseline_band(evidence: DataFrame, z: float = BAND_Z) -> DataFrame:
    """Adds the session conversion band an hour would stay inside to be unremarkable on its own:
    the purchasing-session counts x whose single-hour evidence `count_z`(x, λ) / √φ lies within
    ±`z` (`count_at_z`), as rates of the hour's viewing sessions. The detector itself flags on
    evidence accumulated over hours, so an hour can leave the band without a flag, and a run of
    hours just inside it can be flagged."""
    expected = F.col("expected_purchase_sessions")
    reach = F.lit(z) * F.sqrt(F.col("phi"))  # the count_z either end of the band reaches
    sessions = F.nullif(F.col("_n").cast("double"), F.lit(0.0))
    low = count_at_z(expected, -reach)
    high = count_at_z(expected, reach)
    return (
        evidence.withColumn("band_low", low / sessions)
        .withColumn("band_high", F.least(high / sessions, F.lit(1.0)))
        .withColumn("expected_session_conversion_rate", F.col("p_base"))
    )


def detect(gold: DataFrame, judged_days: list) -> DataFrame:
    """The flagged brand-hours of `judged_days` (see `evidence_for_days`)."""
    first, last = min(judged_days), max(judged_days)
    return flag(evidence_for_days(gold, judged_days)).filter(
        F.col("window_date").between(F.lit(first), F.lit(last))
    )


def _severity(score: Column) -> Column:
    """The name of the highest of rules.SEVERITY_THRESHOLDS that `score` reaches."""
    (lowest, _), *higher = SEVERITY_THRESHOLDS
    severity = F.lit(lowest)
    for name, threshold in higher:
        severity = F.when(score >= threshold, F.lit(name)).otherwise(severity)
    return severity
