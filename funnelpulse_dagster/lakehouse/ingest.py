"""Bronze ingestion over whole files: which files a run touches, which day owns each line, the
parse of the run's days, and the ingest ledger. No Dagster here: the asset calls these.

Each landing file is read once per fingerprint: the first run that needs a file (or a changed
file) reads it whole and files each of its records under its own day in BRONZE_LANDING_LINES
(funnelpulse_dagster.lakehouse.ownership has the rule). Every run then knows, from that table's
log alone, each file's anchor day and how many records every day owns, and parses only the
landed records of its own days.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from funnelpulse_dagster.lakehouse import lakefs
from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.lakehouse.ownership import ExportLayout, layout_of, owned_days
from funnelpulse_dagster.tables import BRONZE_EVENTS, BRONZE_LANDING_LINES, BRONZE_QUARANTINE
from funnelpulse_dagster.transforms.bronze import (
    OWN_DAY,
    SOURCE_FILE,
    export_lines,
    landing_records,
    parse_landed_records,
)

# what an export may be called in the landing folder
EXPORT_SUFFIXES = (".csv", ".csv.gz")
# the landing partition of records without a day of their own
UNDATED = "undated"
_FILE_KEY_LENGTH = 16
# reads of the stored counts while a day outside the run looks half written, and the pause
# between them: another run's two commits (bronze, then its quarantine) are a moment apart
SETTLE_READS = 4
SETTLE_PAUSE_SECONDS = 2.0


@dataclass
class InputFile:
    """One export file and what its landed records say about it."""

    entry: lakefs.FileEntry
    layout: ExportLayout
    lines_by_day: dict[date, int] = field(default_factory=dict)  # records each day owns
    undated_lines: int = 0  # records without a day of their own (they go to the anchor day)

    @property
    def uri(self) -> str:
        return self.entry.uri

    @property
    def anchor(self) -> date | None:
        """The earliest own day of the file's lines; undated lines belong to it."""
        return min(self.lines_by_day) if self.lines_by_day else None

    @property
    def file_key(self) -> str:
        return hashlib.sha256(self.uri.encode()).hexdigest()[:_FILE_KEY_LENGTH]

    @property
    def version_prefix(self) -> str:
        """The landing partitions of this file as it is now start with this."""
        version = hashlib.sha256(self.entry.fingerprint.encode()).hexdigest()[:12]
        return f"{self.file_key}_{version}_"

    def parts(self, days: Iterable[date]) -> list[str]:
        """The landing partitions holding this file's records owned by `days`."""
        wanted = set(days)
        parts = [self.version_prefix + d.isoformat() for d in sorted(wanted & set(self.lines_by_day))]
        if self.undated_lines and self.anchor in wanted:
            parts.append(self.version_prefix + UNDATED)
        return parts


@dataclass
class Landing:
    """The landing files as a run sees them, after every one is landed."""

    files: list[InputFile]
    # the files this run read whole (new or changed since they were landed): records per file
    read_whole: dict[str, int]
    # the files read whole because they changed since they were landed: the days their earlier
    # content owned and the days they own now (bronze of those outside the run is stale)
    changed_days: dict[str, list[date]]


def list_exports(raw_uri: str) -> list[lakefs.FileEntry]:
    """The export files directly under the landing folder (`*.csv`, `*.csv.gz`)."""
    return lakefs.list_files(raw_uri, EXPORT_SUFFIXES)


def _landed_parts(lake: Lake) -> dict[str, int]:
    """Records per landing partition, from the table's log (no data file is read)."""
    return lake.rows_by_partition(BRONZE_LANDING_LINES) if lake.is_table(BRONZE_LANDING_LINES) else {}


def _days_of(parts: Mapping[str, int], prefix: str) -> dict[date | None, int]:
    """Records per own day (None: undated) in the partitions starting with `prefix`."""
    found: dict[date | None, int] = defaultdict(int)
    for part, rows in parts.items():
        if part.startswith(prefix):
            day = part.rsplit("_", 1)[1]
            found[None if day == UNDATED else date.fromisoformat(day)] += rows
    return dict(found)


def land(
    session: SparkSession, lake: Lake, entries: Sequence[lakefs.FileEntry], tag: str | None = None
) -> Landing:
    """Land every file not yet landed as it is now (one Spark job reads the new and changed files
    whole and writes their records under their own days, in one commit that also drops what a
    changed or vanished file had landed before), then describe every file from the log.

    Raises ExportFormatError naming the file when a file cannot be ingested as it is: a header
    without the export's columns, lines that disagree with the header, records without any date.
    """
    files = [InputFile(e, layout_of(e.uri, lakefs.read_head(e.uri))) for e in entries]
    parts = _landed_parts(lake)
    landed_keys = {part[:_FILE_KEY_LENGTH] for part in parts}
    listed_keys = {f.file_key for f in files}
    unread = [f for f in files if not _days_of(parts, f.version_prefix)]
    before = {f.uri: _days_of(parts, f.file_key + "_") for f in unread}
    dropped = (landed_keys - listed_keys) | {f.file_key for f in unread}
    if dropped & landed_keys or unread:
        frames = [
            export_lines(session, f.uri)
            .transform(landing_records, f.layout)
            .select(
                F.lit(f.uri).alias(SOURCE_FILE),
                F.col(OWN_DAY),
                F.col("value").alias("line"),
                F.concat(
                    F.lit(f.version_prefix), F.coalesce(F.date_format(OWN_DAY, "yyyy-MM-dd"), F.lit(UNDATED))
                ).alias(BRONZE_LANDING_LINES.partition_column),
            )
            for f in unread
        ]
        frame = (
            reduce(DataFrame.unionByName, frames)
            if frames
            else session.createDataFrame([], BRONZE_LANDING_LINES.schema)
        )
        keys = ", ".join(f"'{k}'" for k in sorted(dropped))
        predicate = f"substring(`{BRONZE_LANDING_LINES.partition_column}`, 1, {_FILE_KEY_LENGTH}) IN ({keys})"
        try:
            lake.replace_where(frame, BRONZE_LANDING_LINES, predicate, tag=tag)
        except Exception as exc:
            # another run landed the same files at the same time and committed first (Delta's
            # conflict check refuses the second overwrite): its records are the same
            parts = _landed_parts(lake)
            if "Concurrent" not in str(exc) or not all(_days_of(parts, f.version_prefix) for f in unread):
                raise
            unread = []
        parts = _landed_parts(lake)
    for f in files:
        for day, rows in _days_of(parts, f.version_prefix).items():
            if day is None:
                f.undated_lines = rows
            else:
                f.lines_by_day[day] = rows
        owned_days(f.uri, set(f.lines_by_day), bool(f.undated_lines))  # refuses a file without dates
        if f.undated_lines:
            f.lines_by_day[f.anchor] += f.undated_lines
    read_whole = {f.uri: sum(f.lines_by_day.values()) for f in unread}
    # a changed file: the days its earlier content owned, and those it owns now
    changed = {
        f.uri: sorted({d for d in before[f.uri] if d is not None} | set(f.lines_by_day))
        for f in unread
        if before[f.uri]
    }
    return Landing(files, read_whole, changed)


def files_owning(files: Iterable[InputFile], days: Iterable[date]) -> list[InputFile]:
    """The files with at least one line owned by one of `days`: the files a run touches."""
    wanted = set(days)
    return [f for f in files if wanted & set(f.lines_by_day)]


def parsed_lines(
    session: SparkSession, lake: Lake, files: Sequence[InputFile], days: Sequence[date]
) -> DataFrame:
    """The parsed landed records of `files` owned by `days` (bronze columns, `_reason`,
    `_row_date`): only the landing partitions of those days are read."""
    frames = []
    for layout, group in _by_layout(files).items():
        parts = [p for f in group for p in f.parts(days)]
        frames.append(
            lake.read(session, BRONZE_LANDING_LINES)
            .filter(F.col(BRONZE_LANDING_LINES.partition_column).isin(parts))
            .transform(parse_landed_records, {f.uri: f.anchor for f in group}, layout)
        )
    return reduce(DataFrame.unionByName, frames)


def _by_layout(files: Iterable[InputFile]) -> dict[ExportLayout, list[InputFile]]:
    groups: dict[ExportLayout, list[InputFile]] = defaultdict(list)
    for f in files:
        groups[f.layout].append(f)
    return dict(groups)


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


def settled_rows_by_file_day(
    read: Callable[[], tuple[dict, dict]],
    unsettled: Callable[[dict, dict], list],
    reads: int = SETTLE_READS,
    pause_seconds: float = SETTLE_PAUSE_SECONDS,
) -> tuple[dict, dict]:
    """`read()` (stored bronze and quarantine rows, `stored_rows_by_file_day`) again while
    `unsettled(bronze, quarantine)` names file-days, at most `reads` times, `pause_seconds`
    apart: a day another run is writing can be read between its two commits, and settles within
    a moment, while rows that are really missing stay missing and are judged as they are."""
    counts = read()
    for _ in range(reads - 1):
        if not unsettled(*counts):
            break
        time.sleep(pause_seconds)
        counts = read()
    return counts


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
