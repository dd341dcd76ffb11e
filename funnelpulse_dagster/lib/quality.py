"""The data-quality rules as asset-check results.

Each function reads what actually landed (not what the asset meant to write) and returns an
AssetCheckResult whose metadata says why it failed: counts per day and sample keys. They are
ERROR-severity and blocking, so a failed check stops the downstream assets of the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse.lake import TaggedCommit
from funnelpulse_dagster.rules import (
    DAILY_MATCHES_HOURLY,
    EVENT_COUNTS,
    EVERY_ANOMALY_EXPLAINED,
    FUNNEL_RATES,
    INPUT_ROWS_RECONCILE,
    ORDERED_FUNNEL_CONSISTENT,
    RATES_VALID,
    RECONCILED_TOTALS,
    REVENUE,
    ROW_CHANGE_EXPLAINED,
    ROW_CHANGE_LIMIT,
    SILVER_KEY_RULE,
    SILVER_ROW_RULES,
    STREAM_MATCHES_BATCH,
    TOTALS_MATCH_SILVER,
    KeyRule,
    Rate,
    RowRule,
    TableCheck,
)
from funnelpulse_dagster.tables import (
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_SESSION_FUNNEL_DAILY,
    SHOP_DIMENSION,
    SILVER_EVENTS,
)

SAMPLE_LIMIT = 5


def check_spec(
    rule: RowRule | KeyRule | TableCheck, asset: str, blocking: bool = True, **kwargs
) -> AssetCheckSpec:
    """The asset check that enforces `rule` on `asset`: its name and description come from
    rules.py, so the UI, the result and the docs say the same thing."""
    return AssetCheckSpec(
        rule.check_name, asset=asset, blocking=blocking, description=rule.requirement, **kwargs
    )


def _result(name: str, passed: bool, description: str, metadata: dict) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )


def for_asset(result: AssetCheckResult, asset_name: str) -> AssetCheckResult:
    """The same result addressed to `asset_name` (a multi-asset whose tables share check names
    must say which table a result is for)."""
    return AssetCheckResult(
        asset_key=asset_name,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
    )


def _file_day_state(owned: int, stored: int, in_run: bool) -> str:
    """A (file, day)'s reconciliation: `matched`, `pending` (a day outside the run that holds
    none of the file's rows yet) or `mismatched`."""
    if owned == stored:
        return "matched"
    return "pending" if not in_run and stored == 0 else "mismatched"


def mismatched_outside_run(
    owned_lines: Mapping[tuple[str, date], int],
    bronze_rows: Mapping[tuple[str, date], int],
    quarantine_rows: Mapping[tuple[str, date], int],
    run_days: Iterable[date],
) -> list[tuple[str, date]]:
    """The (file, day)s outside the run that `ingest_reconciliation` would fail on. Another run
    writing such a day commits its bronze and its quarantine one after the other, so a read
    between the two commits sees the day half written; the caller reads again before judging."""
    days = set(run_days)
    keys = set(owned_lines) | set(bronze_rows) | set(quarantine_rows)
    return sorted(
        key
        for key in keys
        if key[1] not in days
        and _file_day_state(
            owned_lines.get(key, 0), bronze_rows.get(key, 0) + quarantine_rows.get(key, 0), False
        )
        == "mismatched"
    )


def ingest_reconciliation(
    owned_lines: Mapping[tuple[str, date], int],
    bronze_rows: Mapping[tuple[str, date], int],
    quarantine_rows: Mapping[tuple[str, date], int],
    run_days: Iterable[date],
) -> AssetCheckResult:
    """Every line of every file the run touched is in bronze or in quarantine, exactly once,
    over all the days each file owns, not only the run's days.

    Keys are (file, day). `owned_lines` comes from the landed records of the whole files;
    the stored counts are read back from the tables, so a lost file, a partition written to the
    wrong day or a row dropped between parsing and storage all show up here.

    - A day of the run whose stored rows differ from the lines it owns fails the check.
    - A day outside the run that holds rows of the file which differ from what it owns (the
      file changed since, or rows were lost) fails it too.
    - A day outside the run that holds none of the file's rows yet is *pending*: the check
      passes and names each such file and day with its line count, never silently.
    """
    days = set(run_days)
    keys = set(owned_lines) | set(bronze_rows) | set(quarantine_rows)
    mismatched, pending = [], []
    for key in sorted(keys):
        uri, day = key
        owned = owned_lines.get(key, 0)
        stored = bronze_rows.get(key, 0) + quarantine_rows.get(key, 0)
        state = _file_day_state(owned, stored, day in days)
        if state == "pending":
            pending.append({"file": uri, "day": day.isoformat(), "lines": owned})
        elif state == "mismatched":
            mismatched.append(
                {
                    "file": uri,
                    "day": day.isoformat(),
                    "lines": owned,
                    "bronze": bronze_rows.get(key, 0),
                    "quarantine": quarantine_rows.get(key, 0),
                    "in_run": day in days,
                }
            )
    total = sum(owned_lines.values())
    stored_total = sum(bronze_rows.values()) + sum(quarantine_rows.values())
    files = sorted({uri for uri, _ in keys})
    lost = sum(m["lines"] - m["bronze"] - m["quarantine"] for m in mismatched)
    description = f"every line of {len(files)} file(s) is in bronze or quarantine exactly once"
    if mismatched:
        first = mismatched[0]
        description = (
            f"{len(mismatched)} file-day(s) disagree ({lost:+d} lines unaccounted for), first "
            f"{first['file']} on {first['day']}: {first['lines']} lines, "
            f"{first['bronze']} in bronze + {first['quarantine']} in quarantine"
        )
    elif pending:
        description += (
            f" on the days built so far; {sum(p['lines'] for p in pending)} line(s) belong to "
            f"{len(pending)} file-day(s) not built yet, first {pending[0]['file']} on {pending[0]['day']}"
        )
    return _result(
        INPUT_ROWS_RECONCILE.name,
        not mismatched,
        description,
        {
            "files": len(files),
            "input_lines": total,
            "bronze_plus_quarantine_rows": stored_total,
            "mismatched_file_days": MetadataValue.json(mismatched[: SAMPLE_LIMIT * 10]),
            "pending_file_days": MetadataValue.json(pending[: SAMPLE_LIMIT * 10]),
            "pending_lines": sum(p["lines"] for p in pending),
        },
    )


def _any_of(conditions: list[Column]) -> Column:
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = combined | condition
    return combined


def key_hash(columns: Iterable[str]) -> Column:
    """A 64-bit hash of a row's key: equal keys have equal hashes, so keys whose hashes are all
    distinct are distinct."""
    return F.xxhash64(*columns)


def shared_key_hashes(stored_silver: DataFrame) -> int:
    """How many key hashes more than one row holds (0 proves every key unique).

    The rows are shuffled by the hash before they are grouped: with every key unique, an
    aggregation before the shuffle would build a map as large as its input and reduce nothing,
    and COUNT(DISTINCT) of the hashes costs more (silver's `checks` phase in `benchmarks/batch.py`).
    """
    hashes = stored_silver.select(key_hash(SILVER_KEY_RULE.key).alias("key_hash"))
    return hashes.repartition("key_hash").groupBy("key_hash").count().filter(F.col("count") > 1).count()


def silver_stored_summary(stored_silver: DataFrame) -> dict[date, dict]:
    """Per stored day of silver: `rows`, and the rows breaking each silver row rule (by check
    name), for silver's row counts and silver_violation_counts."""
    return summary_by_day(
        stored_silver,
        SILVER_EVENTS.partition_column,
        *[F.count(F.when(rule.broken(), True)).alias(rule.check_name) for rule in SILVER_ROW_RULES],
    )


def silver_violation_counts(
    stored_silver: DataFrame, summary: Mapping[date, Mapping] | None = None, shared_hashes: int | None = None
) -> dict[str, int]:
    """Stored rows breaking each silver row rule, by check name, and `rows_written` (from a
    silver_stored_summary), and `shared_key_hashes` for the key rule (a job of its own); the
    summary and the hashes are made here when not given."""
    if summary is None:
        summary = silver_stored_summary(stored_silver)
    counts = {
        rule.check_name: sum(day[rule.check_name] for day in summary.values()) for rule in SILVER_ROW_RULES
    }
    counts["rows_written"] = sum(day["rows"] for day in summary.values())
    counts["shared_key_hashes"] = shared_key_hashes(stored_silver) if shared_hashes is None else shared_hashes
    return counts


def silver_quality(
    violations_by_check: Mapping[str, int], stored_silver: DataFrame
) -> list[AssetCheckResult]:
    """The silver rules on the stored partitions: violation counts (from silver_violation_counts),
    duplicate keys, and samples of whatever breaks a rule."""
    key = list(SILVER_KEY_RULE.key)

    def sample(condition: Column) -> list[dict]:
        rows = stored_silver.filter(condition).select(*key, "price").limit(SAMPLE_LIMIT).collect()
        return [{k: str(v) for k, v in r.asDict().items()} for r in rows]

    results = []
    for rule in SILVER_ROW_RULES:
        violations = violations_by_check[rule.check_name]
        results.append(
            _result(
                rule.check_name,
                violations == 0,
                rule.requirement,
                {
                    "violations": violations,
                    "rows_checked": violations_by_check["rows_written"],
                    "sample": MetadataValue.json(sample(rule.broken()) if violations else []),
                },
            )
        )
    # No hash held by two rows proves every key unique by shuffling 8-byte hashes instead of
    # the whole key. Otherwise group the rows by key, which tells true duplicates from hash
    # collisions; a failing check pays for a second job to count them.
    duplicate_keys, duplicate_sample = 0, []
    if violations_by_check["shared_key_hashes"]:
        duplicates = stored_silver.groupBy(*key).count().filter(F.col("count") > 1)
        duplicate_sample = [
            {k: str(v) for k, v in r.asDict().items()} for r in duplicates.limit(SAMPLE_LIMIT).collect()
        ]
        duplicate_keys = duplicates.count() if duplicate_sample else 0
    results.append(
        _result(
            SILVER_KEY_RULE.check_name,
            duplicate_keys == 0,
            SILVER_KEY_RULE.requirement,
            {"duplicate_keys": duplicate_keys, "sample": MetadataValue.json(duplicate_sample)},
        )
    )
    return results


def silver_daily_totals(silver: DataFrame) -> dict[date, dict]:
    """views / carts / purchases / revenue per day, counted from silver's events."""
    aggregations = [
        F.count(F.when(F.col("event_type") == EVENT_COUNTS[name], True)).alias(name)
        for name in RECONCILED_TOTALS
        if name in EVENT_COUNTS
    ] + [
        F.coalesce(
            F.sum(F.when(F.col("event_type") == EVENT_COUNTS["purchases"], F.col("price"))), F.lit(0)
        ).alias(REVENUE)
    ]
    rows = silver.groupBy(F.col(SILVER_EVENTS.partition_column).alias("day")).agg(*aggregations).collect()
    return {r["day"]: {k: r[k] for k in RECONCILED_TOTALS} for r in rows}


def _invalid(rate: Rate) -> Column:
    value, denominator = F.col(rate.name), F.col(rate.denominator)
    return (value < 0) | (value.isNull() & (denominator > 0)) | (value.isNotNull() & (denominator == 0))


def summary_by_day(stored: DataFrame, day_column: str, *metrics: Column) -> dict[date, dict]:
    """`rows` and `metrics` per stored day (`day`), in one Spark job: each table's row counts and
    checks read one such summary, because on a warm server each small job has a fixed cost
    however little it reads."""
    rows = (
        stored.groupBy(F.col(day_column).alias("day"))
        .agg(F.count(F.lit(1)).alias("rows"), *metrics)
        .collect()
    )
    return {r["day"]: r.asDict() for r in rows}


def gold_day_summary(stored: DataFrame, day_column: str) -> dict[date, dict]:
    """Per stored day of a gold table: `rows`, the RECONCILED_TOTALS, and per rate the rows where
    it is invalid (`invalid_<rate>`), for the row counts, the totals check and the rates check."""
    return summary_by_day(
        stored,
        day_column,
        *[F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in RECONCILED_TOTALS],
        *[F.count(F.when(_invalid(rate), True)).alias(f"invalid_{rate.name}") for rate in FUNNEL_RATES],
    )


def rows_by_day(summary: Mapping[date, Mapping], days: Iterable[date]) -> dict[date, int]:
    """Each day's stored rows from a summary_by_day, 0 for a day with none."""
    return {day: summary[day]["rows"] if day in summary else 0 for day in days}


def totals_match(gold: Mapping[date, dict], silver: Mapping[date, dict], what: str) -> AssetCheckResult:
    """Gold's daily totals equal silver's exactly (revenue is DECIMAL: to the cent)."""
    empty = dict.fromkeys(RECONCILED_TOTALS, 0)
    mismatched = {}
    for day in sorted(set(gold) | set(silver)):
        g, s = gold.get(day, empty), silver.get(day, empty)
        diff = {k: {"gold": str(g[k]), "silver": str(s[k])} for k in empty if g[k] != s[k]}
        if diff:
            mismatched[day.isoformat()] = diff
    return _result(
        TOTALS_MATCH_SILVER.name,
        not mismatched,
        f"{what}: daily views, carts, purchases and revenue equal silver's"
        + ("" if not mismatched else f"; {len(mismatched)} day(s) differ"),
        {
            "days_checked": len(set(gold) | set(silver)),
            "silver_purchases": sum(s["purchases"] for s in silver.values()),
            "silver_revenue": MetadataValue.float(float(sum(s["revenue"] for s in silver.values()))),
            "mismatched_days": MetadataValue.json(mismatched),
        },
    )


def rates_valid(summary: Mapping[date, Mapping]) -> AssetCheckResult:
    """Every rate is ≥ 0, and NULL exactly where its denominator is 0 (from a gold_day_summary)."""
    invalid = {
        rate.name: sum(day[f"invalid_{rate.name}"] for day in summary.values()) for rate in FUNNEL_RATES
    }
    bad = {rate: count for rate, count in invalid.items() if count}
    return _result(
        RATES_VALID.name,
        not bad,
        RATES_VALID.requirement,
        {
            "rows_checked": sum(day["rows"] for day in summary.values()),
            "invalid_rates": MetadataValue.json(bad),
        },
    )


def daily_matches_hourly(daily: DataFrame, hourly: DataFrame) -> AssetCheckResult:
    """Daily brand event metrics equal the sum of the day's hourly brand rows, brand by brand.
    (Session and user counts are not additive over hours, so they are not compared.)"""
    metrics = [*EVENT_COUNTS, "revenue"]
    rolled = hourly.groupBy(F.col("window_date").alias("date"), "brand").agg(
        *[F.sum(m).alias(m) for m in metrics]
    )
    joined = rolled.alias("h").join(
        daily.select("date", "brand", *metrics).alias("d"),
        (F.col("h.date").eqNullSafe(F.col("d.date"))) & (F.col("h.brand").eqNullSafe(F.col("d.brand"))),
        "full_outer",
    )
    differs = _any_of([~F.col(f"h.{m}").eqNullSafe(F.col(f"d.{m}")) for m in metrics])
    mismatched = joined.filter(differs)
    sample = [
        {k: str(v) for k, v in r.asDict().items()}
        for r in mismatched.select(
            F.coalesce("h.date", "d.date").alias("date"),
            F.coalesce("h.brand", "d.brand").alias("brand"),
            *[F.col(f"h.{m}").alias(f"hourly_{m}") for m in metrics],
            *[F.col(f"d.{m}").alias(f"daily_{m}") for m in metrics],
        )
        .limit(SAMPLE_LIMIT)
        .collect()
    ]
    count = mismatched.count() if sample else 0
    return _result(
        DAILY_MATCHES_HOURLY.name,
        count == 0,
        DAILY_MATCHES_HOURLY.requirement,
        {"mismatched_day_brands": count, "sample": MetadataValue.json(sample)},
    )


def _rows_as_text(frame: DataFrame, columns: list[str]) -> list[dict]:
    return [
        {k: str(v) for k, v in r.asDict().items()}
        for r in frame.select(*columns).limit(SAMPLE_LIMIT).collect()
    ]


def stream_matches_batch(stream: DataFrame, batch: DataFrame) -> AssetCheckResult:
    """The live table equals batch gold for every hour it has closed, on the days batch has.

    The stream only holds hours its watermark closed, from the first hour it saw; within that
    span, an hour × brand that one side has and the other lacks, or any metric that differs,
    is a mismatch. Days batch has not built yet are counted, not judged.
    """
    lo, hi = stream.agg(F.min("window_start"), F.max("window_end")).first()
    if lo is None:
        return AssetCheckResult(
            check_name=STREAM_MATCHES_BATCH.name,
            passed=True,
            severity=AssetCheckSeverity.ERROR,
            description="the stream has closed no hour yet: nothing to compare",
            metadata={"compared_rows": 0},
        )
    stream_days = {r[0] for r in stream.select("window_date").distinct().collect()}
    batch_days = {
        r[0]
        for r in batch.filter(F.col("window_date").isin(sorted(stream_days)))
        .select("window_date")
        .distinct()
        .collect()
    }
    days = sorted(stream_days & batch_days)
    span = (F.col("window_start") >= F.lit(lo)) & (F.col("window_end") <= F.lit(hi))
    live = stream.filter(F.col("window_date").isin(days))
    reference = batch.filter(F.col("window_date").isin(days) & span)
    only_stream = live.exceptAll(reference).cache()
    only_batch = reference.exceptAll(live).cache()
    key = ["window_start", "brand", "views", "purchases", "revenue"]
    mismatch_stream, mismatch_batch = only_stream.count(), only_batch.count()
    metadata = {
        "compared_days": len(days),
        "compared_rows": live.count(),
        "stream_days_without_batch": len(stream_days - batch_days),
        "first_hour": str(lo),
        "end_of_last_closed_hour": str(hi),
        "rows_only_in_stream": mismatch_stream,
        "rows_only_in_batch": mismatch_batch,
        "sample_only_in_stream": MetadataValue.json(_rows_as_text(only_stream, key)),
        "sample_only_in_batch": MetadataValue.json(_rows_as_text(only_batch, key)),
    }
    only_stream.unpersist()
    only_batch.unpersist()
    passed = mismatch_stream == 0 and mismatch_batch == 0
    return AssetCheckResult(
        check_name=STREAM_MATCHES_BATCH.name,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"closed hours of {len(days)} day(s) equal batch gold"
            if passed
            else f"{mismatch_stream} stream rows and {mismatch_batch} batch rows have no equal on the other side"
        ),
        metadata=metadata,
    )


INCIDENT_LIMIT = 25


def incident_list(anomalies: DataFrame, days: Sequence[date]) -> dict[date, dict[str, object]]:
    """Each day's drops, biggest first, as that partition's metadata: findings of the detector,
    not a verdict on the data (a check fails only when the data is wrong)."""
    drops = anomalies.filter(F.col("anomaly_type") == "drop").orderBy(F.desc("score")).collect()
    header = [
        "| brand | hour (UTC) | views | conversion | expected | session conversion | expected | score | top hint |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    by_day: dict[date, list] = {day: [] for day in days}
    for r in drops:
        by_day.setdefault(r["window_date"], []).append(r)
    return {
        day: {
            "drops": len(rows),
            "incidents": MetadataValue.md(
                "\n".join(
                    header
                    + [
                        f"| {r['brand']} | {r['window_start']:%Y-%m-%d %H:00} | {r['views']} | "
                        f"{r['conversion_rate']:.3f} | {r['expected_conversion_rate']:.3f} | "
                        f"{r['session_conversion_rate'] or 0:.3f} | {r['expected_session_conversion_rate']:.3f} | "
                        f"{r['score']:.1f} | {r['top_hint']} |"
                        for r in rows[:INCIDENT_LIMIT]
                    ]
                )
                if rows
                else "no conversion drops on this day"
            ),
        }
        for day, rows in by_day.items()
    }


def explained(anomalies: DataFrame) -> AssetCheckResult:
    """ERROR: every anomaly carries the baseline it was compared with and at least one hint."""
    unexplained = anomalies.filter(
        F.col("expected_conversion_rate").isNull()
        | F.col("root_cause_hints").isNull()
        | (F.size("root_cause_hints") == 0)
    )
    count = unexplained.count()
    sample = [f"{r['brand']} {r['window_start']}" for r in unexplained.limit(5).collect()]
    return AssetCheckResult(
        check_name=EVERY_ANOMALY_EXPLAINED.name,
        asset_key=GOLD_ANOMALIES_HOURLY_BRAND.name,
        passed=count == 0,
        severity=AssetCheckSeverity.ERROR,
        description="every anomaly has its baseline and a root-cause hint"
        if count == 0
        else f"{count} anomalies lack a baseline or a hint",
        metadata={"unexplained": count, "sample": MetadataValue.json(sample)},
    )


def ordered_funnel_summary(stored: DataFrame) -> dict[date, dict]:
    """Per stored day of the ordered funnel: `rows`, `inconsistent_rows` (a step that grows, or a
    drop-off that is not the difference of its steps) and `shop_viewed_sessions` (the viewed
    sessions of the row for the shop as a whole), for the row counts and
    ordered_funnel_consistent."""
    inconsistent = (
        (F.col("purchased_sessions") > F.col("carted_sessions"))
        | (F.col("carted_sessions") > F.col("viewed_sessions"))
        | (F.col("purchased_sessions") > F.col("bought_sessions"))
        | (F.col("dropped_after_view") != F.col("viewed_sessions") - F.col("carted_sessions"))
        | (F.col("dropped_after_cart") != F.col("carted_sessions") - F.col("purchased_sessions"))
    )
    return summary_by_day(
        stored,
        GOLD_SESSION_FUNNEL_DAILY.partition_column,
        F.count(F.when(inconsistent, True)).alias("inconsistent_rows"),
        # summed, not picked: a day with two shop rows then disagrees with the recount
        F.coalesce(
            F.sum(F.when(F.col("dimension") == SHOP_DIMENSION, F.col("viewed_sessions"))), F.lit(0)
        ).alias("shop_viewed_sessions"),
    )


def viewed_sessions_by_day(silver_around: DataFrame, days: Iterable[date]) -> dict[date, int]:
    """Sessions per day that viewed at all, counted from silver by another route than the ordered
    funnel (each session's first event, and whether it viewed): the recount
    ordered_funnel_consistent holds the table's shop rows to."""
    return {
        r["day"]: r["sessions"]
        for r in silver_around.filter(F.col("user_session").isNotNull())
        .groupBy("user_session")
        .agg(
            F.to_date(F.min("event_time")).alias("day"),
            F.max((F.col("event_type") == "view").cast("int")).alias("v"),
        )
        .filter((F.col("v") == 1) & F.col("day").isin(sorted(set(days))))
        .groupBy("day")
        .agg(F.count(F.lit(1)).alias("sessions"))
        .collect()
    }


def ordered_funnel_consistent(
    summary: Mapping[date, Mapping], recount: Mapping[date, int], days: Iterable[date]
) -> AssetCheckResult:
    """The stored ordered funnel (its ordered_funnel_summary) against itself and against silver:
    steps never grow, drop-offs are differences, and the shop's viewed sessions per day equal
    silver's recount (viewed_sessions_by_day)."""
    bad_rows = sum(figures["inconsistent_rows"] for figures in summary.values())
    shop = {day: figures["shop_viewed_sessions"] for day, figures in summary.items()}
    mismatched = {
        d.isoformat(): {"table": shop.get(d, 0), "silver": recount.get(d, 0)}
        for d in sorted(set(days))
        if shop.get(d, 0) != recount.get(d, 0)
    }
    return _result(
        ORDERED_FUNNEL_CONSISTENT.name,
        bad_rows == 0 and not mismatched,
        ORDERED_FUNNEL_CONSISTENT.requirement,
        {"inconsistent_rows": bad_rows, "mismatched_days": MetadataValue.json(mismatched)},
    )


def row_change_explained(
    table_name: str,
    commit: TaggedCommit | None,
    input_before: Mapping[str, int],
    input_after: Mapping[str, int],
    days: Sequence[date],
) -> AssetCheckResult:
    """rules.ROW_CHANGE_EXPLAINED over the run's days: each day's rows in the version the run
    wrote against the version before it, beside the input table's rows for that day then
    (`input_before`, read as of that version's time) and now."""
    flagged: dict[str, dict] = {}
    compared = 0
    for day in days:
        key = day.isoformat()
        before = commit.rows_before.get(key, 0) if commit else 0
        if not before:
            continue  # a day new to the table: nothing to compare with
        compared += 1
        after = commit.rows_after.get(key, 0)
        own = abs(after - before) / before
        was, now = input_before.get(key, 0), input_after.get(key, 0)
        moved = abs(now - was) / was if was else (1.0 if now else 0.0)
        if own > ROW_CHANGE_LIMIT and own > 2 * moved:
            flagged[key] = {
                "rows_before": before,
                "rows_after": after,
                "input_rows_before": was,
                "input_rows_after": now,
            }
    version = commit.snapshot.version if commit else None
    return AssetCheckResult(
        asset_key=table_name,
        check_name=ROW_CHANGE_EXPLAINED.check_name,
        passed=not flagged,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{len(flagged)} of {compared} rewritten day(s) changed row count beyond what their input explains"
            if flagged
            else f"{compared} rewritten day(s) compared with the previous version; none moved unexplained"
        ),
        metadata={
            "delta_version": version if version is not None else -1,
            "days_compared": compared,
            "unexplained_days": MetadataValue.json(flagged),
        },
    )
