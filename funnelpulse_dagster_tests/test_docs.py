"""The docs a user reads say what the code does: the README's asset table, command list and
automation table, and the detector's thresholds in docs/anomalies.md, are held to the code."""

from __future__ import annotations

import re

from funnelpulse_dagster_tests.conftest import REPO

README = (REPO / "README.md").read_text()


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_readme_is_short_and_holds_no_measured_figures():
    assert len(README.splitlines()) <= 120
    timing = re.findall(r"\b\d+(?:[.,]\d+)?\s?(?:s|ms|min|minutes|seconds)\b", README)
    assert not timing, timing  # figures live in docs/performance.md, written by the benchmarks


def test_readme_asset_table_is_the_code_locations_assets():
    from funnelpulse_dagster.definitions import defs
    from funnelpulse_dagster.tables import ALL_TABLES

    graph = defs.resolve_asset_graph()
    rows = _table_rows(README, "| asset |")
    assert sorted(r[0] for r in rows) == sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    for name, group, partition, _ in rows:
        node = next(graph.get(k) for k in graph.get_all_asset_keys() if k.to_user_string() == name)
        assert group == node.group_name, name
        expected = ALL_TABLES[name].partition_column if name in ALL_TABLES else "–"
        assert partition == expected, name


def test_readme_command_list_is_the_clis_commands():
    import argparse

    from funnelpulse_dagster.cli import build_parser

    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    listed = [r[0].removeprefix("funnelpulse ") for r in _table_rows(README, "| command |")]
    assert sorted(listed) == sorted(subparsers.choices)


def test_automation_doc_lists_every_schedule_and_sensor():
    from funnelpulse_dagster.definitions import defs

    rows = _table_rows((REPO / "docs" / "automation.md").read_text(), "| name |")
    names = [s.name for s in defs.schedules or []] + [s.name for s in defs.sensors or []]
    assert sorted(r[0] for r in rows) == sorted(names)


def test_anomaly_docs_state_the_thresholds_the_detector_uses():
    from funnelpulse_dagster import rules

    text = (REPO / "docs" / "anomalies.md").read_text()
    severities = ", ".join(f"{name} ≥ {threshold:g}" for name, threshold in rules.SEVERITY_THRESHOLDS)
    assert f"({severities})" in text
    assert f"max_k |S_k| ≥ {rules.THRESHOLD:g}" in text
    assert f"(|z| ≥ {rules.CURRENT_HOUR_Z:g})" in text
    assert f"at least {rules.MIN_VIEWS} views" in text
    assert f"over the last {rules.SHOP_HOURS} hours" in text
    assert f"by at least {rules.SHOP_DEPARTURE_Z:g} Poisson standard deviations" in text
    assert f"expecting at least {rules.SHOP_MIN_SESSIONS} purchasing sessions" in text
    assert f"weighing more than {rules.SHOP_MAX_WEIGHT:g} of the hour's" in text
    assert f"at least {rules.SHOP_MIN_BRANDS} such brands" in text
    assert f"the {rules.LOOKBACK_DAYS + 1} before it" in text


def test_the_performance_page_is_what_the_benchmarks_recorded():
    """docs/performance.md is rendered by the benchmarks' figures script from their recorded
    results: a hand edit, or a result recorded without rendering the page, fails its check."""
    import subprocess
    import sys

    checked = subprocess.run(
        [sys.executable, "benchmarks/figures.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_links_into_the_performance_page_find_their_section():
    headings = re.findall(r"^## (.+)$", (REPO / "docs" / "performance.md").read_text(), re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    linked = {m for doc in docs for m in re.findall(r"performance\.md#([\w\-]+)", doc.read_text())}
    assert linked and linked <= anchors, linked - anchors


def test_one_code_location_name_everywhere():
    """`dagster dev` (pyproject's dg project), workspace.yaml and the runs `funnelpulse launch`
    creates all name the location the same, so the UI places every run and sensor under it."""
    import tomllib

    import yaml

    from funnelpulse_dagster.lib.runs import CODE_LOCATION

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    (target,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert project["code_location_name"] == target["python_module"]["location_name"] == CODE_LOCATION
