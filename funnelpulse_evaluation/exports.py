"""The generator's export files as the shop's Kafka messages, for the live benchmarks: JSON with
the export's text values, keyed by session (else user), in event-time order."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

EXPORT_COLUMNS = ["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price", "user_id", "user_session"]  # fmt: skip


def export_messages(
    raw: Path, begin: pd.Timestamp | None = None, end: pd.Timestamp | None = None, count: int | None = None
) -> list[tuple[pd.Timestamp, bytes, bytes]]:
    """(event time, value, key) of the events in `raw`'s CSV exports from `begin` until `end`
    (the first `count` of them when given); lines without a valid time are left out."""
    import json

    frame = pd.concat(pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(raw.glob("*.csv")))
    frame["parsed_time"] = pd.to_datetime(frame["event_time"].str.removesuffix(" UTC"), errors="coerce")
    frame = frame.dropna(subset=["parsed_time"])
    if begin is not None:
        frame = frame[frame["parsed_time"] >= begin]
    if end is not None:
        frame = frame[frame["parsed_time"] < end]
    frame = frame.sort_values("parsed_time", kind="stable")
    if count is not None:
        frame = frame.head(count)
    out = []
    for row in frame.itertuples(index=False):
        record = {k: (getattr(row, k) or None) for k in EXPORT_COLUMNS}
        key = (record["user_session"] or record["user_id"] or "").encode()
        out.append((row.parsed_time, json.dumps(record).encode(), key))
    return out
