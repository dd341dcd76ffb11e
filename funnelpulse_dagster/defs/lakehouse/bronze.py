"""bronze_events, bronze_quarantine and bronze_ingest_ledger: every input line, typed or
quarantined with a reason, and per file and day where its lines went."""

from collections import Counter, defaultdict
from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    MetadataValue,
    multi_asset,
)
from pyspark.sql import Observation
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse.ingest import (
    files_owning,
    land,
    ledger_rows,
    list_exports,
    parsed_lines,
    settled_rows_by_file_day,
    stored_rows_by_file_day,
)
from funnelpulse_dagster.lakehouse.ownership import ExportFormatError
from funnelpulse_dagster.lib.partitions import (
    ROW_COUNT,
    daily_partitions,
    single_run_backfill,
)
from funnelpulse_dagster.lib.quality import check_spec, ingest_reconciliation, mismatched_outside_run
from funnelpulse_dagster.lib.spark_tables import SPARK_TABLE_KINDS, start_run
from funnelpulse_dagster.resources import LakeResource, RawDataResource, SparkResource
from funnelpulse_dagster.rules import INPUT_ROWS_RECONCILE
from funnelpulse_dagster.tables import BRONZE_EVENTS, BRONZE_INGEST_LEDGER, BRONZE_QUARANTINE
from funnelpulse_dagster.transforms.bronze import (
    LINES_PARSED,
    QUARANTINED_ROWS,
    bronze_rows,
    collect_quarantined,
    reason_kind,
)


@multi_asset(
    specs=[
        AssetSpec(
            BRONZE_EVENTS.name,
            description="One typed row per parsed input line (UTC event_time, 64-bit ids, exact prices).",
            group_name="bronze",
            kinds=SPARK_TABLE_KINDS,
        ),
        AssetSpec(
            BRONZE_QUARANTINE.name,
            description="One row per input line that could not be parsed, with the raw text and the reason.",
            group_name="bronze",
            kinds=SPARK_TABLE_KINDS,
        ),
        AssetSpec(
            BRONZE_INGEST_LEDGER.name,
            description="One row per input file and day it owns lines on: the file's size, "
            "modification time and fingerprint, the lines that day owns, and how many landed in "
            "bronze and in quarantine.",
            group_name="bronze",
            kinds=SPARK_TABLE_KINDS,
        ),
    ],
    check_specs=[check_spec(INPUT_ROWS_RECONCILE, BRONZE_EVENTS.name)],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    # `--select '*gold_funnel_hourly_brand'` selects bronze_events without its twins. All three
    # tables are written whatever is selected (a parse that kept only the good rows would lose
    # the bad ones); only the selected ones are reported as materialized.
    can_subset=True,
)
def bronze(
    context: AssetExecutionContext, spark: SparkResource, lake: LakeResource, raw_data: RawDataResource
):
    run = start_run(context, BRONZE_EVENTS, spark, lake)
    session, days, timer = run.session, run.days, run.timer
    with timer.phase("list_files"):
        entries = list_exports(raw_data.uri)
    if not entries:
        raise FileNotFoundError(
            f"no *.csv or *.csv.gz files under {raw_data.uri}; put the shop's exports there "
            "or create sample data with `funnelpulse generate`"
        )
    # new and changed files are read whole once, their records filed under their own days; the
    # log of the landed records then gives every file's lines per day (anchors, the ledger)
    with timer.phase("land"):
        landing = land(session, lake.plain, entries, tag=run.tag)
    files = landing.files
    touched = files_owning(files, days)
    run_days = set(days)
    for uri, owned in landing.changed_days.items():
        stale = [d.isoformat() for d in owned if d not in run_days]
        if stale:
            context.log.warning(
                f"bronze: {uri} changed since it was landed; the days it owned or owns outside "
                f"this run are stale until they are materialized again: {', '.join(stale)}"
            )

    counter = Observation("bronze_input")
    with timer.phase("parse_and_write_bronze"):
        if touched:
            parsed = parsed_lines(session, lake.plain, touched, days)
            # One pass: the write carries the few quarantined rows back in its metrics (caching
            # the parse or parsing twice cost more), and how many landed records it parsed.
            # The days are chosen above the observe(), which keeps that filter out of the parse.
            observed = parsed.observe(
                counter, collect_quarantined(days), F.count(F.lit(1)).alias(LINES_PARSED)
            )
            lake.replace_partitions(bronze_rows(observed, days), BRONZE_EVENTS, days, tag=run.tag)
            metrics = counter.get
            quarantined = [tuple(row) for row in metrics[QUARANTINED_ROWS]]
            lines_parsed = int(metrics[LINES_PARSED])
        else:
            lake.replace_partitions(
                session.createDataFrame([], BRONZE_EVENTS.schema), BRONZE_EVENTS, days, tag=run.tag
            )
            quarantined = []
            lines_parsed = 0
    with timer.phase("write_quarantine"):
        lake.replace_partitions(
            session.createDataFrame(quarantined, BRONZE_QUARANTINE.schema),
            BRONZE_QUARANTINE,
            days,
            tag=run.tag,
        )

    owned = {(f.uri, day): n for f in touched for day, n in f.lines_by_day.items()}
    with timer.phase("read_back_counts"):
        stored_bronze, stored_quarantine = settled_rows_by_file_day(
            lambda: stored_rows_by_file_day(session, lake.plain, touched),
            lambda stored, quarantined: mismatched_outside_run(owned, stored, quarantined, days),
        )
    with timer.phase("write_ledger"):
        ledger = ledger_rows(touched, days, stored_bronze, stored_quarantine)
        lake.replace_partitions(
            session.createDataFrame(ledger, BRONZE_INGEST_LEDGER.schema),
            BRONZE_INGEST_LEDGER,
            days,
            tag=run.tag,
        )
    _refuse_wholly_quarantined(touched, days, quarantined)

    by_day = _per_day(days, owned, stored_bronze, stored_quarantine, quarantined, ledger)
    run.log_phases()
    context.log.info(
        f"bronze: {len(touched)} of {len(files)} file(s) own lines on {len(days)} day(s): "
        f"{sum(d['rows_in'] for d in by_day.values())} lines -> "
        f"{sum(d['bronze'] for d in by_day.values())} bronze, "
        f"{sum(d['quarantine'] for d in by_day.values())} quarantined; "
        f"{lines_parsed} landed record(s) parsed; files read whole: "
        f"{', '.join(f'{uri} ({n} records)' for uri, n in landing.read_whole.items()) or 'none'}"
    )
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    per_table = {
        BRONZE_EVENTS.name: lambda d: {
            ROW_COUNT: d["bronze"],
            "rows_in": d["rows_in"],
            "rows_out": d["bronze"],
            "quarantined_rows": d["quarantine"],
            "input_files": MetadataValue.json(d["files"]),
            # the day's files this run read whole (new or changed); the others' records were landed
            "files_read_whole": MetadataValue.json(
                {uri: landing.read_whole[uri] for uri in d["files"] if uri in landing.read_whole}
            ),
        },
        BRONZE_QUARANTINE.name: lambda d: {
            ROW_COUNT: d["quarantine"],
            "reasons": MetadataValue.json(d["reasons"]),
        },
        BRONZE_INGEST_LEDGER.name: lambda d: {
            ROW_COUNT: d["ledger"],
            "input_files": MetadataValue.json(d["files"]),
        },
    }
    for table in (BRONZE_EVENTS, BRONZE_QUARANTINE, BRONZE_INGEST_LEDGER):
        if table.name not in selected:
            continue
        yield run.report(table, {day: per_table[table.name](f) for day, f in by_day.items()})
    if context.selected_asset_check_keys:
        yield ingest_reconciliation(owned, stored_bronze, stored_quarantine, days)


def _per_day(days, owned, stored_bronze, stored_quarantine, quarantined, ledger) -> dict[date, dict]:
    """Each day's own figures, for its partition's materialization."""
    figures = {
        day: {"rows_in": 0, "bronze": 0, "quarantine": 0, "reasons": Counter(), "files": [], "ledger": 0}
        for day in days
    }
    for (uri, day), n in owned.items():
        if day in figures:
            figures[day]["rows_in"] += n
            figures[day]["files"].append(uri)
    for (_, day), n in stored_bronze.items():
        if day in figures:
            figures[day]["bronze"] += n
    for (_, day), n in stored_quarantine.items():
        if day in figures:
            figures[day]["quarantine"] += n
    for row in quarantined:
        _source, _raw, reason, day = row
        figures[day]["reasons"][reason_kind(reason)] += 1
    for row in ledger:
        figures[row[-1]]["ledger"] += 1
    for d in figures.values():
        d["reasons"] = dict(sorted(d["reasons"].items()))
    return figures


def _refuse_wholly_quarantined(touched, days, quarantined) -> None:
    """A file none of whose lines on the run's days parsed is not an export of ours (a shifted
    layout, another shop's format): fail the run naming it rather than report a green run that
    quarantined everything. A single bad line is an ordinary quarantine."""
    bad_by_file: dict[str, Counter] = defaultdict(Counter)
    for source, _raw, reason, _day in quarantined:
        bad_by_file[source][reason_kind(reason)] += 1
    wanted = set(days)
    for f in touched:
        lines = sum(n for day, n in f.lines_by_day.items() if day in wanted)
        bad = sum(bad_by_file[f.uri].values())
        if lines >= 2 and bad == lines:
            raise ExportFormatError(
                f"{f.uri}: all {lines} of its lines on the run's days failed to parse "
                f"({dict(bad_by_file[f.uri])}); they are in bronze_quarantine, but a file with no "
                "usable line is not an export this platform can read: check its format"
            )
