"""Which day owns each input line, and how an export file is laid out: the rules bronze and the
`data_raw/` sensor share (plain Python; the Spark form of the same rule is in transforms/bronze.py
and a test holds the two equal on hostile input).

The ownership rule, so that materializing the days a file covers always ingests all of it:

- A line's *own day* is the UTC date of its `event_time` when that parses, else the date its
  text starts with (`YYYY-MM-DD`) when that is a real date, else it has none.
- A file's *anchor day* is the earliest own day among its lines.
- A line belongs to its own day, and a line without one to its file's anchor day. So every
  line belongs to exactly one day, and that day is one the file's own dated lines cover.
- A file with lines but no dated line at all cannot be placed on any day: the run fails with an
  error that names it.

Blank lines and header lines are not records and belong to no day. A leading UTF-8 byte-order
mark is ignored; Windows line endings are handled by Spark's line reader and here alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from funnelpulse_dagster.tables import RAW_COLUMNS

BOM = "\ufeff"
HEADER_LINE = ",".join(RAW_COLUMNS)
# how many data lines of a file's head are compared with its header's column count
_LAYOUT_SAMPLE_LINES = 20

# the export's own line shape: the line starts with `YYYY-MM-DD HH:MM:SS UTC,`; such a line's own
# day is the date it starts with when that is a real date (a bad clock time leaves the date)
_EXPORT_LINE = re.compile(rb"^(\d{4}-\d{2}-\d{2}) \d{2}:\d{2}:\d{2} UTC,", re.MULTILINE)
_OTHER_LINE = re.compile(rb"^(?!\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC,)([^\n]*)", re.MULTILINE)
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?(Z|[+-]\d{2}:\d{2})$")
_QUOTED_FIELD = re.compile(r'(?:^|,)("(?:[^"]|"")*"|[^,]*)')


class ExportFormatError(ValueError):
    """An input file FunnelPulse cannot ingest as it is; the message names the file."""


@dataclass(frozen=True)
class ExportLayout:
    """Where each of the nine Kaggle columns stands in a file's lines.

    `positions[i]` is the field index of RAW_COLUMNS[i]; `field_count` is how many fields a
    line must have; `header` is the file's header text (None when the file has none, and then
    the Kaggle order is assumed)."""

    positions: tuple[int, ...]
    field_count: int
    header: str | None

    @property
    def standard(self) -> bool:
        return self.positions == tuple(range(len(RAW_COLUMNS))) and self.field_count == len(RAW_COLUMNS)


STANDARD_LAYOUT = ExportLayout(tuple(range(len(RAW_COLUMNS))), len(RAW_COLUMNS), HEADER_LINE)


def clean_line(line: str) -> str:
    """A line as the rules see it: no byte-order mark, no line-ending characters."""
    return line.lstrip(BOM).rstrip("\r\n")


def split_fields(line: str) -> list[str]:
    """The line's fields; quoted fields (with "" escapes) only where a quote occurs."""
    if '"' not in line:
        return line.split(",")
    fields = []
    for match in _QUOTED_FIELD.finditer(line):
        field = match.group(1)
        if field.startswith('"') and field.endswith('"') and len(field) >= 2:
            field = field[1:-1].replace('""', '"')
        fields.append(field)
    return fields


def is_record(line: str, layout: ExportLayout) -> bool:
    """Blank lines and header lines are not input rows. (Spark's trim strips spaces only.)"""
    text = clean_line(line).strip(" ")
    return text not in ("", HEADER_LINE) and text != layout.header


def layout_of(uri: str, head: bytes) -> ExportLayout:
    """The file's layout from its first bytes, or ExportFormatError naming the file.

    A header names the columns: the nine Kaggle columns in any order, extra columns allowed
    (they are ignored). A file without a header must be in the Kaggle order. A header without
    all nine columns, or lines whose field count disagrees with the header, refuse the file.
    """
    lines = [clean_line(x) for x in head.decode("utf-8", errors="replace").split("\n")]
    if head and not head.endswith(b"\n") and len(lines) > 1:
        lines = lines[:-1]  # the last line of the head may be cut off
    lines = [x for x in lines if x.strip(" ")]
    if not lines:
        return STANDARD_LAYOUT
    first = lines[0].strip(" ")
    names = [n.strip().strip('"').strip().lower() for n in split_fields(first)]
    if "event_time" not in names:
        # no header: the export's column order (a line that does not fit is quarantined, and
        # a file with no usable line at all is refused by bronze)
        return ExportLayout(STANDARD_LAYOUT.positions, STANDARD_LAYOUT.field_count, None)
    missing = [c for c in RAW_COLUMNS if c not in names]
    if missing:
        raise ExportFormatError(
            f"{uri}: the header lacks the column(s) {', '.join(missing)}; expected the export "
            f"header {HEADER_LINE} (columns in any order, extra columns are ignored)"
        )
    repeated = sorted({n for n in names if names.count(n) > 1 and n in RAW_COLUMNS})
    if repeated:
        raise ExportFormatError(f"{uri}: the header names {', '.join(repeated)} more than once")
    layout = ExportLayout(tuple(names.index(c) for c in RAW_COLUMNS), len(names), first)
    sample = [x for x in lines[1:] if is_record(x, layout)][:_LAYOUT_SAMPLE_LINES]
    counts = {len(split_fields(x)) for x in sample}
    if sample and layout.field_count not in counts:
        raise ExportFormatError(
            f"{uri}: the header names {layout.field_count} columns but its first lines have "
            f"{sorted(counts)} fields; "
            f"expected lines of the export header {HEADER_LINE} (a header naming any extra column)"
        )
    return layout


def parse_event_date(text: str | None) -> date | None:
    """The UTC date of an `event_time` text, as bronze's parser reads it; None if it does not
    parse. Export form `YYYY-MM-DD HH:MM:SS UTC`, or ISO-8601 with `Z` or an offset."""
    if text is None:
        return None
    text = text.strip(" ")
    if len(text) == 23 and text.endswith(" UTC") and text[10] == " ":
        try:
            return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").date()
        except ValueError:
            return None
    if _ISO_TIME.match(text):
        try:
            return datetime.fromisoformat(text).astimezone(UTC).date()
        except ValueError:
            return None
    return None


def prefix_date(line: str) -> date | None:
    try:
        return date.fromisoformat(line[:10]) if len(line) >= 10 and line[4] == "-" else None
    except ValueError:
        return None


def own_day(line: str, layout: ExportLayout) -> date | None:
    """The line's own day (see the module docstring), None when it has none."""
    line = clean_line(line)
    fields = split_fields(line)
    position = layout.positions[0]
    event_time = fields[position] if position < len(fields) else None
    return parse_event_date(event_time) or prefix_date(line)


def _lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines across chunk borders (each chunk ends at a line end, bar the last)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        carry = data[cut:]
    if carry:
        yield carry


def own_days_in(chunks: Iterable[bytes], layout: ExportLayout) -> tuple[set[date], bool]:
    """(the own days of a file's lines, whether any record has no own day), from its content.

    Export-shaped lines take a C-speed regex; only the others (headers, odd lines, other
    layouts) are looked at one by one."""
    days: set[date] = set()
    prefixes: set[bytes] = set()
    undated = False
    for block in _lines_of(chunks):
        if layout.standard:
            prefixes.update(_EXPORT_LINE.findall(block))
            others = (m.group(1) for m in _OTHER_LINE.finditer(block))
        else:
            others = iter(block.split(b"\n"))
        for raw in others:
            line = raw.decode("utf-8", errors="replace")
            if not is_record(line, layout):
                continue
            day = own_day(line, layout)
            if day is None:
                undated = True
            else:
                days.add(day)
    for prefix in prefixes:
        day = prefix_date(prefix.decode())
        if day is None:
            undated = True
        else:
            days.add(day)
    return days, undated


def owned_days(uri: str, own: set[date], undated: bool) -> set[date]:
    """The days a file owns: its lines' own days (the anchor, the earliest, is among them).
    A file whose records have no own day at all is refused."""
    if undated and not own:
        raise ExportFormatError(
            f"{uri}: no line carries a date, so no day can own its lines; "
            "every line of an export starts with its event_time"
        )
    return own
