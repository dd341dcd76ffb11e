"""FunnelPulse's Dagster code location: everything under `defs/`, found by `load_from_defs_folder`.

`defs/<domain>/` holds the thin wiring (assets, checks, jobs, schedules, sensors) per domain;
the engine they call (tables, rules, transforms, the lake, Kafka, serving) lives outside `defs/`
and imports nothing from it (`test_architecture.py` proves it). `with_catalog` then gives every
table asset what the catalog shows: columns, table name and URI, owner, tags, freshness.
"""

from __future__ import annotations

from pathlib import Path

from dagster import load_from_defs_folder

from funnelpulse_dagster.lib.catalog import with_catalog

defs = with_catalog(load_from_defs_folder(path_within_project=Path(__file__).parent))
