"""Bronze ingestion over whole files: which files a run touches, which day owns each line, the
parse of the run's days, and the ingest ledger. No Dagster here: the asset calls these.

A run of days D reads every input file once cheaply (records per file and own day, see
funnelpulse_dagster.lakehouse.ownership), so it knows each file's anchor day and how many lines every day
owns, and then parses only the files that own a line on a day in D.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import reduce
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.lakehouse.ownership import ExportLayout, layout_of, owned_days
from funnelpulse_dagster.tables import BRONZE_EVENTS, BRONZE_QUARANTINE
from funnelpulse_dagster.transforms.bronze import (
    OWN_DAY,
    RAW_FILE,
    drop_non_records,
    export_lines,
    line_ownership,
    parse_raw_lines,
    prefilter_lines_for_dates,
)

# what an export may be called in the landing folder
EXPORT_SUFFIXES = (".csv", ".csv.gz")


@dataclass
class InputFile:
    """One export file and what the ownership pass learned about it."""

    entry: lakefs.FileEntry
    layout: ExportLayout
    spark_name: str | None = None  # the file as Spark's reader names it (None: no record at all)
    lines_by_day: dict[date, int] = field(default_factory=dict)  # records each day owns
    undated_lines: int = 0  # records without a day of their own (they go to the anchor day)

    @property
    def uri(self) -> str:
        return self.entry.uri

    @property
    def anchor(self) -> date | None:
        """The earliest own day of the file's lines; undated lines belong to it."""
        return min(self.lines_by_day) if self.lines_by_day else None


def list_exports(raw_uri: str) -> list[lakefs.FileEntry]:
    """The export files directly under the landing folder (`*.csv`, `*.csv.gz`)."""
    return lakefs.list_files(raw_uri, EXPORT_SUFFIXES)


def _same_file(spark_name: str, uri: str) -> bool:
    if lakefs.is_local(spark_name):
        return lakefs.normalise_uri(unquote(lakefs.local_path(spark_name))) == lakefs.normalise_uri(uri)
    return unquote(spark_name) == uri


def survey(session: SparkSession, entries: Sequence[lakefs.FileEntry]) -> list[InputFile]:
    """Layout and line ownership of every file (one cheap Spark job per distinct layout).

    Raises ExportFormatError naming the file when a file cannot be ingested as it is: a header
    without the export's columns, lines that disagree with the header, records without any date.
    """
    files = [InputFile(e, layout_of(e.uri, lakefs.read_head(e.uri))) for e in entries]
    for layout, group in _by_layout(files).items():
        rows = export_lines(session, [f.uri for f in group]).transform(line_ownership, layout).collect()
        for row in rows:
            owner = next((f for f in group if _same_file(row[RAW_FILE], f.uri)), None)
            if owner is None:  # never expected: Spark names a file we did not ask for
                raise RuntimeError(
                    f"Spark read {row[RAW_FILE]}, which is not one of {[f.uri for f in group]}"
                )
            owner.spark_name = row[RAW_FILE]
            if row[OWN_DAY] is None:
                owner.undated_lines += row["count"]
            else:
                owner.lines_by_day[row[OWN_DAY]] = owner.lines_by_day.get(row[OWN_DAY], 0) + row["count"]
    for f in files:
        owned_days(f.uri, set(f.lines_by_day), bool(f.undated_lines))  # refuses a file without dates
        if f.undated_lines:
            f.lines_by_day[f.anchor] += f.undated_lines
    return files


def _by_layout(files: Iterable[InputFile]) -> dict[ExportLayout, list[InputFile]]:
    groups: dict[ExportLayout, list[InputFile]] = defaultdict(list)
    for f in files:
        groups[f.layout].append(f)
    return dict(groups)


def files_owning(files: Iterable[InputFile], days: Iterable[date]) -> list[InputFile]:
    """The files with at least one line owned by one of `days`: the files a run touches."""
    wanted = set(days)
    return [f for f in files if wanted & set(f.lines_by_day)]


def parsed_lines(session: SparkSession, files: Sequence[InputFile], days: Sequence[date]) -> DataFrame:
    """The parsed records of `files` that may be owned by `days` (bronze columns, `_reason`,
    `_row_date`): a cheap pre-filter drops lines far from the days, and `bronze_rows`,
    `quarantine_rows` and `collect_quarantined` keep exactly the days' rows."""
    frames = []
    for layout, group in _by_layout(files).items():
        names = {f.spark_name: (f.uri, f.anchor) for f in group}
        frames.append(
            export_lines(session, [f.uri for f in group])
            .transform(drop_non_records, layout)
            .transform(prefilter_lines_for_dates, days)
            .transform(parse_raw_lines, names, layout)
        )
    return reduce(DataFrame.unionByName, frames)


def stored_rows_by_file_day(
    session: SparkSession, lake: Lake, files: Sequence[InputFile]
) -> tuple[dict[tuple[str, date], int], dict[tuple[str, date], int]]:
    """(bronze rows, quarantine rows) per (file, day) as stored, over every day the files own."""
    uris = [f.uri for f in files]
    days = sorted({d for f in files for d in f.lines_by_day})

    def counts(table) -> dict[tuple[str, date], int]:
        if not days:
            return {}
        frame = lake.read(session, table, days).filter(F.col("source_file").isin(uris))
        rows = frame.groupBy("source_file", table.partition_column).count().collect()
        return {(r[0], r[1]): r[2] for r in rows}

    return counts(BRONZE_EVENTS), counts(BRONZE_QUARANTINE)


def ledger_rows(
    files: Sequence[InputFile],
    days: Sequence[date],
    bronze: Mapping[tuple[str, date], int],
    quarantine: Mapping[tuple[str, date], int],
    ingested_at: datetime | None = None,
) -> list[tuple]:
    """One ledger row per (file, day of the run that the file owns lines on), in the column
    order of BRONZE_INGEST_LEDGER."""
    now = ingested_at or datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for f in files:
        for day in sorted(set(days) & set(f.lines_by_day)):
            mtime = f.entry.mtime.astimezone(UTC).replace(tzinfo=None) if f.entry.mtime else None
            rows.append(
                (
                    f.uri,
                    f.entry.size,
                    mtime,
                    f.entry.fingerprint,
                    f.lines_by_day[day],
                    bronze.get((f.uri, day), 0),
                    quarantine.get((f.uri, day), 0),
                    now,
                    day,
                )
            )
    return rows
