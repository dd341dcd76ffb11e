"""Hourly brand conversion anomalies: baselines from earlier days only, a count test, evidence
that accumulates over consecutive hours, and root-cause hints.

Why not the seed's method (a z-score of the hour's rate against the brand's mean over all
history): its baseline contains the judged hour and every later one, so verdicts change as days
arrive and it cannot run live; and a rate from 40 views is noisy, so 2σ floods the list.

The detector, per brand-hour t of a judged day D:
- baseline rate p = purchasing sessions / viewing sessions of the brand in the same hour of day (and weekday) over
  the `LOOKBACK_DAYS` days before D, each level shrunk towards the one above it (global → brand
  → brand × hour of day → brand × hour × weekday) by a prior worth a fixed number of views, so
  a thin history falls back to a broader baseline instead of a noisy one;
- the hour's evidence z_t: observed purchasing sessions x against λ = viewing sessions · p on the variance-stabilised
  (Anscombe) scale, 2(√(x+3/8) − √(λ+3/8)), divided by √φ, the brand's over-dispersion measured
  on its history (what is left of extra-binomial variation); hours under
  `MIN_EVIDENCE_VIEWS` views carry no evidence and hours under `MIN_VIEWS` are never flagged;
- accumulated evidence S_k(t) = Σ z over the k hours ending at t / √k, for k = 1..6; a sustained
  drop of a mid-sized brand adds up even when no single hour is conclusive;
- a flag when a run covering the hour passed: max_k |S_k| ≥ `THRESHOLD` at the hour itself, or
  at a later hour of the same day whose run reaches back over it (the first hours of an incident
  rarely pass alone); and the hour itself deviates the same way (|z_t| ≥ `CURRENT_HOUR_Z`), so an
  hour after an anomaly ends is not flagged for its predecessors.

Baselines look backwards only and runs reach back only within the judged day, so a day's
verdicts depend on days D−LOOKBACK−1 … D and never change when later days are added. Live hours
are judged the same way; a later hour of the day can add its earlier hours to an incident, so
the live judge re-judges every closed hour of the day.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from funnelpulse_dagster.rules import (
    BAND_Z,
    CHI2_1_MEDIAN,
    CURRENT_HOUR_Z,
    HINT_DIMENSIONS,
    HINT_PRIOR_VIEWS,
    HINTS_PER_DIMENSION,
    LOOKBACK_DAYS,
    MAX_RUN_HOURS,
    MIN_EVIDENCE_VIEWS,
    MIN_VIEWS,
    OUTLIER_Z,
    PRIOR_VIEWS,
    THRESHOLD,
)
from funnelpulse_dagster.tables import GOLD_ANOMALIES_HOURLY_BRAND
from funnelpulse_dagster.transforms.silver import to_silver


def with_time_keys(gold: DataFrame) -> DataFrame:
    """Adds the clock keys, and the trials and successes the test counts: viewing sessions and
    purchasing sessions (a session that buys twenty items is one success, so the counts are
    binomial-like; purchase events come in such bursts and would look like spikes)."""
    return (
        gold.withColumn("_n", F.col("view_sessions"))
        .withColumn("_x", F.col("purchase_sessions"))
        .withColumn("hour_of_day", F.hour("window_start"))
        .withColumn("weekday", F.dayofweek("window_start"))
        .withColumn("hour_index", (F.unix_seconds("window_start") / 3600).cast("long"))
    )


def history_for_days(gold: DataFrame, days: DataFrame) -> DataFrame:
    """Each judged day (`judged_date`) paired with the gold rows of the LOOKBACK_DAYS before it."""
    return days.join(
        gold,
        (gold["window_date"] < days["judged_date"])
        & (gold["window_date"] >= F.date_sub(days["judged_date"], LOOKBACK_DAYS)),
    )


def _shrunk(purchases: Column, views: Column, parent: Column, prior_views: int) -> Column:
    return (purchases + F.lit(prior_views) * parent) / (views + F.lit(prior_views))


def baselines(history: DataFrame) -> DataFrame:
    """Per judged day × brand × hour of day × weekday: the baseline conversion `p_base`, shrunk
    through the levels (global → brand → hour of day → weekday), the event conversion `p_event`
    reported beside the session test, and the seed's statistics (mean and standard deviation of
    the hourly rate per brand and per brand × hour of day) for its z columns.

    Every brand with history gets all 24 × 7 cells, so a judged hour always finds its cell: one
    its history lacks (a weekday not yet seen in the first week of data, an hour of day a
    sparse brand never had) gets the shrinkage of an empty cell, which is its parent's rate.
    The grid is built from the levels themselves rather than joined to the judged hours level by
    level: every extra reference to the history repeats its whole plan (three separate joins
    made it 1.6× bigger and ran a 2 GB driver out of heap in the live job)."""
    sums = [F.sum("_x").alias("P"), F.sum("_n").alias("V")]
    glob = (
        history.groupBy("judged_date")
        .agg(*sums)
        .select("judged_date", (F.col("P") / F.greatest(F.col("V"), F.lit(1))).alias("p_global"))
    )
    rate = F.when(F.col("views") > 0, F.col("purchases") / F.col("views"))
    brand = (
        history.groupBy("judged_date", "brand")
        .agg(
            *sums,
            F.avg(rate).alias("seed_mean_brand"),
            F.stddev(rate).alias("seed_std_brand"),
            (F.sum("purchases") / F.greatest(F.sum("views"), F.lit(1))).alias("p_event_brand"),
        )
        .join(glob, "judged_date")
        .withColumn("p_brand", _shrunk(F.col("P"), F.col("V"), F.col("p_global"), PRIOR_VIEWS["brand"]))
        .drop("P", "V", "p_global")
    )
    hour_sums = history.groupBy("judged_date", "brand", "hour_of_day").agg(
        *sums,
        F.avg(rate).alias("seed_mean_hour"),
        F.stddev(rate).alias("seed_std_hour"),
        F.sum("purchases").alias("EP"),
        F.sum("views").alias("EV"),
    )
    hour = (
        brand.withColumn("hour_of_day", F.explode(F.sequence(F.lit(0), F.lit(23))))
        .join(hour_sums, ["judged_date", "brand", "hour_of_day"], "left")
        .withColumn(
            "p_hour",
            _shrunk(
                F.coalesce("P", F.lit(0)), F.coalesce("V", F.lit(0)), F.col("p_brand"), PRIOR_VIEWS["hour"]
            ),
        )
        # the event conversion the hour usually has (the brand's, for an hour it never had)
        .withColumn(
            "p_event", F.coalesce(F.col("EP") / F.greatest(F.col("EV"), F.lit(1)), F.col("p_event_brand"))
        )
        .drop("P", "V", "EP", "EV")
    )
    cell_sums = history.groupBy("judged_date", "brand", "hour_of_day", "weekday").agg(*sums)
    return (
        hour.withColumn("weekday", F.explode(F.sequence(F.lit(1), F.lit(7))))
        .join(cell_sums, ["judged_date", "brand", "hour_of_day", "weekday"], "left")
        .withColumn(
            "p_base",
            _shrunk(
                F.coalesce("P", F.lit(0)), F.coalesce("V", F.lit(0)), F.col("p_hour"), PRIOR_VIEWS["weekday"]
            ),
        )
        .drop("P", "V")
    )


def _anscombe_gap(observed: Column, expected: Column) -> Column:
    return F.lit(2.0) * (F.sqrt(observed + F.lit(0.375)) - F.sqrt(expected + F.lit(0.375)))


def _with_history_z(history: DataFrame, base: DataFrame) -> DataFrame:
    fitted = history.join(
        base.select("judged_date", "brand", "hour_of_day", "weekday", "p_base"),
        ["judged_date", "brand", "hour_of_day", "weekday"],
    )
    return fitted.withColumn("_gap", _anscombe_gap(F.col("_x"), F.col("_n") * F.col("p_base")))


def without_outliers(history: DataFrame, first_pass: DataFrame) -> DataFrame:
    """History hours whose purchases are within OUTLIER_Z (Poisson scale) of the first-pass
    baseline; hours under MIN_VIEWS always stay (they cannot be judged)."""
    return (
        _with_history_z(history, first_pass)
        .filter((F.col("views") < MIN_VIEWS) | (F.abs(F.col("_gap")) <= OUTLIER_Z))
        .drop("_gap", "p_base")
    )


def dispersion(history: DataFrame, base: DataFrame) -> DataFrame:
    """φ per judged day × brand: the median squared Anscombe residual of its history hours
    (robust to earlier anomalies) over χ²(1)'s median, at least 1."""
    fitted = _with_history_z(history.filter(F.col("views") >= MIN_VIEWS), base)
    residual = F.col("_gap")
    return fitted.groupBy("judged_date", "brand").agg(
        F.greatest(F.lit(1.0), F.percentile_approx(residual * residual, 0.5) / F.lit(CHI2_1_MEDIAN)).alias(
            "phi"
        )
    )


def hourly_evidence(judged: DataFrame, base: DataFrame, phi: DataFrame) -> DataFrame:
    """Each judged brand-hour with its expected rate, its own z and the accumulated scores. A
    brand without any history has no baseline, and its hours carry no evidence."""
    scored = (
        judged.join(base, ["judged_date", "brand", "hour_of_day", "weekday"], "left")
        .join(phi, ["judged_date", "brand"], "left")
        .withColumn("phi", F.coalesce("phi", F.lit(1.0)))
        .withColumn("expected_purchase_sessions", F.col("_n") * F.col("p_base"))
        .withColumn("expected_purchases", F.col("views") * F.col("p_event"))
        .withColumn(
            "z_hour",
            F.when(
                (F.col("views") >= MIN_EVIDENCE_VIEWS) & F.col("p_base").isNotNull(),
                _anscombe_gap(F.col("_x"), F.col("expected_purchase_sessions")) / F.sqrt("phi"),
            ).otherwise(F.lit(0.0)),
        )
    )
    by_brand = Window.partitionBy("brand").orderBy("hour_index")
    runs = {
        k: F.sum("z_hour").over(by_brand.rangeBetween(-(k - 1), 0)) / F.lit(float(k) ** 0.5)
        for k in range(1, MAX_RUN_HOURS + 1)
    }
    for k, column in runs.items():
        scored = scored.withColumn(f"_s{k}", column)
    s = [F.col(f"_s{k}") for k in runs]
    return (
        scored.withColumn("drop_score", -F.least(*s))
        .withColumn("spike_score", F.greatest(*s))
        .withColumn(
            "drop_hours",
            F.array_position(F.array(*[-c for c in s]), F.col("drop_score")).cast("int"),
        )
        .withColumn("spike_hours", F.array_position(F.array(*s), F.col("spike_score")).cast("int"))
        .drop(*[f"_s{k}" for k in runs])
    )


def _covering_run(kind: str) -> Column:
    """The strongest run of `kind` (drop | spike) that passed the threshold and covers this hour:
    its own, or one ending up to MAX_RUN_HOURS − 1 hours later on the same day, as
    struct(score, hours); NULL when there is none.

    The first hours of a drop rarely pass on their own (evidence needs two or three hours to
    add up), but once the run through them passes they are part of the same incident. Only runs
    of the same day count, so a day's verdicts never depend on a later day; a run that began the
    day before flags only its hours of the judged day."""
    ahead = Window.partitionBy("brand").orderBy("hour_index").rangeBetween(0, MAX_RUN_HOURS - 1)
    score, hours = F.col(f"{kind}_score"), F.col(f"{kind}_hours")
    passed_runs = F.collect_list(
        F.when(
            score >= THRESHOLD,
            F.struct(
                score.alias("score"),
                hours.alias("hours"),
                (F.col("hour_index") - hours + 1).alias("first_hour"),
                F.col("window_date").alias("day"),
            ),
        )
    ).over(ahead)
    covering = F.filter(
        passed_runs,
        lambda run: (run["first_hour"] <= F.col("hour_index")) & (run["day"] == F.col("window_date")),
    )
    best = F.array_max(covering)  # structs order by their first field, the score
    return F.struct(best["score"].alias("score"), best["hours"].alias("hours"))


def flag(evidence: DataFrame) -> DataFrame:
    """The anomalous brand-hours, with type, score, severity and the seed's columns.

    An hour is flagged when it has at least MIN_VIEWS views, deviates by itself (|z_hour| ≥
    CURRENT_HOUR_Z, so an hour after an anomaly ends is not flagged for its predecessors) and a
    run covering it passed the threshold: the run ending at it, or a later run of the same day
    that reaches back over it (`_covering_run`). `score` and `evidence_hours` are that run's,
    the strongest when several cover the hour."""
    scored = evidence.withColumn("_drop_run", _covering_run("drop")).withColumn(
        "_spike_run", _covering_run("spike")
    )
    traffic = F.col("views") >= MIN_VIEWS
    is_drop = traffic & (F.col("z_hour") <= -CURRENT_HOUR_Z) & F.col("_drop_run.score").isNotNull()
    is_spike = traffic & (F.col("z_hour") >= CURRENT_HOUR_Z) & F.col("_spike_run.score").isNotNull()
    run = F.when(is_drop, F.col("_drop_run")).otherwise(F.col("_spike_run"))
    rate = F.col("conversion_rate")
    z_brand = (rate - F.col("seed_mean_brand")) / F.nullif(F.col("seed_std_brand"), F.lit(0.0))
    z_brand_hour = (rate - F.col("seed_mean_hour")) / F.nullif(F.col("seed_std_hour"), F.lit(0.0))
    score = run["score"]
    return (
        scored.filter(is_drop | is_spike)
        .withColumn("anomaly_type", F.when(is_drop, F.lit("drop")).otherwise(F.lit("spike")))
        .withColumn("score", score)
        .withColumn("evidence_hours", run["hours"])
        .withColumn(
            "severity",
            F.when(score >= 2 * THRESHOLD, F.lit("high"))
            .when(score >= 1.5 * THRESHOLD, F.lit("medium"))
            .otherwise(F.lit("low")),
        )
        .withColumn("expected_conversion_rate", F.col("p_event"))
        .withColumn("expected_session_conversion_rate", F.col("p_base"))
        .withColumn("z_brand", z_brand)
        .withColumn("z_brand_hour", z_brand_hour)
        .withColumn("is_drop_anomaly", F.coalesce((z_brand <= -2) | (z_brand_hour <= -2), F.lit(False)))
        .withColumn("is_spike_anomaly", F.coalesce((z_brand >= 2) | (z_brand_hour >= 2), F.lit(False)))
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
    the purchasing-session counts x whose single-hour evidence |z_hour| is under `z`, i.e.
    √(x + 3/8) = √(λ + 3/8) ± z·√φ / 2, as rates of the hour's viewing sessions. The detector
    itself flags on evidence accumulated over hours, so an hour can leave the band without a
    flag, and a run of hours just inside it can be flagged."""
    root = F.sqrt(F.col("expected_purchase_sessions") + F.lit(0.375))
    half_width = F.lit(z / 2) * F.sqrt(F.col("phi"))
    sessions = F.nullif(F.col("_n").cast("double"), F.lit(0.0))
    low = F.greatest(F.pow(F.greatest(root - half_width, F.lit(0.0)), 2) - F.lit(0.375), F.lit(0.0))
    high = F.pow(root + half_width, 2) - F.lit(0.375)
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


def computed(frame: DataFrame) -> DataFrame:
    """`frame` computed now, with its lineage cut (a local checkpoint).

    Two reasons. The detector's plan is large (hundreds of thousands of characters): every
    later use of an uncut frame plans it all again, which costs more than the work on small
    data. And the live path judges after every streaming run in one long-lived driver: a
    `cache()` stays until it is unpersisted, so caches left behind piled up run after run, while
    a checkpoint's blocks go when the frame is no longer referenced (Spark's context cleaner)."""
    return frame.localCheckpoint(eager=True)


def root_cause_hints(flags: DataFrame, silver: DataFrame) -> DataFrame:
    """For each flagged brand-hour, the segments (category root, price band, product) whose
    purchases moved most against the brand's history in that segment: contribution =
    observed − views × the segment's baseline rate (shrunk to the brand's rate). Segments are
    ranked, in the anomaly's direction, by how much their contribution exceeds their share of
    the hour's views times the dimension's whole gap; `HINTS_PER_DIMENSION` per dimension, most
    important first.

    `silver` must hold the flagged days and their LOOKBACK_DAYS of history. The events it reads
    three times are computed once (see `computed`); the hints themselves are not, as
    `anomaly_rows` computes them in its own result."""
    keys = flags.select("brand", "window_start", "window_date", "anomaly_type").distinct()
    brands = keys.select("brand").distinct()
    # the flagged brands' events over the look-back: small, and read by three dimensions
    events = (
        silver.select(
            F.col("brand_norm").alias("brand"),
            F.date_trunc("hour", "event_time").alias("window_start"),
            "event_date",
            "event_type",
            *[F.coalesce(F.col(d).cast("string"), F.lit("unknown")).alias(d) for d in HINT_DIMENSIONS],
        )
        .join(F.broadcast(brands), "brand")
        .withColumn("is_view", (F.col("event_type") == "view").cast("long"))
        .withColumn("is_purchase", (F.col("event_type") == "purchase").cast("long"))
        .transform(computed)
    )
    judged_days = keys.select("brand", F.col("window_date").alias("judged_date")).distinct()
    past = (
        events.join(judged_days, "brand")
        .filter(
            (F.col("event_date") < F.col("judged_date"))
            & (F.col("event_date") >= F.date_sub(F.col("judged_date"), LOOKBACK_DAYS))
        )
        .transform(computed)
    )
    brand_rate = past.groupBy("brand", "judged_date").agg(
        (F.sum("is_purchase") / F.greatest(F.sum("is_view"), F.lit(1))).alias("p_brand")
    )
    hour_window = Window.partitionBy("brand", "window_start")
    hints = []
    for dim in HINT_DIMENSIONS:
        hour = (
            events.join(
                keys.select("brand", "window_start", "anomaly_type", "window_date"), ["brand", "window_start"]
            )
            .groupBy("brand", "window_start", "window_date", "anomaly_type", F.col(dim).alias("segment"))
            .agg(F.sum("is_view").alias("views"), F.sum("is_purchase").alias("purchases"))
        )
        segment_rate = (
            past.groupBy("brand", "judged_date", F.col(dim).alias("segment"))
            .agg(F.sum("is_purchase").alias("P"), F.sum("is_view").alias("V"))
            .join(brand_rate, ["brand", "judged_date"])
            .withColumn("p_segment", _shrunk(F.col("P"), F.col("V"), F.col("p_brand"), HINT_PRIOR_VIEWS))
            .select("brand", F.col("judged_date").alias("window_date"), "segment", "p_segment")
        )
        with_base = (
            hour.join(segment_rate, ["brand", "window_date", "segment"], "left")
            .join(
                brand_rate.withColumnRenamed("judged_date", "window_date"), ["brand", "window_date"], "left"
            )
            .withColumn("expected_purchases", F.col("views") * F.coalesce("p_segment", "p_brand", F.lit(0.0)))
            .withColumn("contribution", F.col("purchases") - F.col("expected_purchases"))
            # what the segment adds beyond its fair share of the hour's gap: a segment holding
            # every view (one price band for the whole brand) explains nothing by itself
            .withColumn(
                "_excess",
                F.col("contribution")
                - F.col("views")
                / F.greatest(F.sum("views").over(hour_window), F.lit(1))
                * F.sum("contribution").over(hour_window),
            )
            .withColumn(
                "_direction",
                F.when(F.col("anomaly_type") == "drop", -F.col("_excess")).otherwise(F.col("_excess")),
            )
        )
        ranked = with_base.withColumn(
            "_rank",
            F.row_number().over(
                Window.partitionBy("brand", "window_start").orderBy(F.desc("_direction"), F.asc("segment"))
            ),
        ).filter(F.col("_rank") <= HINTS_PER_DIMENSION)
        hints.append(
            ranked.select(
                "brand",
                "window_start",
                F.struct(
                    F.lit(dim).alias("dimension"),
                    F.col("segment").alias("value"),
                    F.col("views").cast("long").alias("views"),
                    F.col("purchases").cast("long").alias("purchases"),
                    F.round("expected_purchases", 2).alias("expected_purchases"),
                    F.round("contribution", 2).alias("contribution"),
                    F.col("_direction").alias("_weight"),
                ).alias("hint"),
            )
        )
    union = hints[0]
    for more in hints[1:]:
        union = union.unionByName(more)
    collected = union.groupBy("brand", "window_start").agg(
        F.sort_array(
            F.collect_list(F.struct(F.col("hint._weight").alias("w"), F.col("hint").alias("h"))), asc=False
        ).alias("_sorted")
    )
    return collected.select(
        "brand",
        "window_start",
        F.transform("_sorted", lambda e: e["h"].dropFields("_weight")).alias("root_cause_hints"),
    )


def describe_hint(hints: Column) -> Column:
    """'category_root=unknown: 3 purchases vs 11.2 expected' for the most important hint."""
    top = F.get(hints, 0)
    return F.when(
        top.isNotNull(),
        F.format_string(
            "%s=%s: %d purchases vs %.1f expected",
            top["dimension"],
            top["value"],
            top["purchases"],
            top["expected_purchases"],
        ),
    )


def anomaly_rows(gold: DataFrame, silver: DataFrame, judged_days: list, source: str) -> DataFrame:
    """gold_anomalies_hourly_brand rows for `judged_days`: the detector's flags with their
    root-cause hints, the top hint in words, and where the judged numbers came from.

    Returned already computed, with its lineage cut (see `computed`)."""
    flags = computed(detect(gold, judged_days))
    hints = root_cause_hints(flags, silver)
    rows = (
        flags.join(hints, ["brand", "window_start"], "left")
        .withColumn("top_hint", describe_hint(F.col("root_cause_hints")))
        .withColumn("source", F.lit(source))
        .select(*GOLD_ANOMALIES_HOURLY_BRAND.schema.fieldNames())
    )
    return computed(rows)


def _stream_days_first(stream: DataFrame, batch: DataFrame, stream_days: DataFrame, day: str) -> DataFrame:
    """The stream's rows on `stream_days`, batch's rows on every other day: each day from one
    side only, so nothing is counted twice where both hold the same day."""
    return stream.join(stream_days, day, "left_semi").unionByName(
        batch.join(stream_days, day, "left_anti").select(*stream.columns)
    )


def live_gold(stream_gold: DataFrame, batch_gold: DataFrame) -> DataFrame:
    """Hourly brand funnel for judging live hours: the stream's numbers for the days it has,
    batch gold for earlier days it does not (the look-back history)."""
    return _stream_days_first(stream_gold, batch_gold, stream_gold.select("window_date").distinct(), "window_date")


def live_silver(stream_gold: DataFrame, batch_silver: DataFrame, stream_events: DataFrame) -> DataFrame:
    """Silver for judging live hours (the root-cause hints read it), split by day exactly as
    `live_gold`: on the days the stream has closed hours, silver made from the stream's events
    (the batch rules and batch's exact de-duplication on the event key: a replayed or re-sent
    message counts once); on every other day, batch silver."""
    stream_days = stream_gold.select(F.col("window_date").alias("event_date")).distinct()
    return _stream_days_first(to_silver(stream_events), batch_silver, stream_days, "event_date")
