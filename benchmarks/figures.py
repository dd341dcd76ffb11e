"""docs/performance.md is written by the benchmarks, never by hand.

Each benchmark ends with `record(name, tables)`: its figures, the command that produced them,
the machine and the date go to `benchmarks/results/<name>.json`, and the page is rendered again
from every recorded result. A section's method is its script's docstring (without the
usage lines), so what a benchmark says it measures has one owner. `test_docs.py` runs
`--check`.

    .venv/bin/python benchmarks/figures.py          # re-render the page from the recorded results
    .venv/bin/python benchmarks/figures.py --check  # exit 1 when the page is not what they render
"""

from __future__ import annotations

import ast
import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "performance.md"

# the page's sections, in order: the recorded name, its title and the script that records it
SECTIONS = (
    ("batch", "The batch lakehouse: a month, Spark against DuckDB", "batch.py"),
    ("batch_parquet_lake", "The same month on the plain-Parquet lake, before the table format", "batch.py"),
    ("scaling", "From a month to two years: one backfill against DuckDB", "scaling.py"),
    ("stream", "The live path's throughput", "stream.py"),
    ("live_latency", "Live freshness: produced to visible", "live_latency.py"),
    ("live_latency_high_rate", "Live freshness above what two cores keep up with", "live_latency.py"),
    ("open_hour_growth", "The open state's cost as its hour grows", "live_latency.py"),
    ("live_latency_full_hour", "Live freshness with a full open hour", "live_latency.py"),
    ("api", "The API under concurrent clients", "api.py"),
    ("anomalies", "Anomaly detection quality", "anomalies.py"),
    ("time_to_detect", "Anomaly alerts: time to detect, end to end", "time_to_detect.py"),
    ("judge_memory", "Driver memory of live judging", "judge_memory.py"),
)
_VERSIONS = ("pyspark", "dagster", "duckdb", "confluent-kafka")


def machine() -> dict:
    """What the figures were measured on."""
    memory_gib = None
    cpu = platform.processor() or platform.machine()
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(next(line for line in meminfo.splitlines() if line.startswith("MemTotal")).split()[1])
        memory_gib = round(kib / 2**20, 1)
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    versions = {}
    for package in _VERSIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **versions,
    }


def code_version() -> str:
    """The commit the figures were measured on (`+changes` when the package differed from it)."""
    import subprocess

    def git(*args: str) -> str:
        run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
        return run.stdout.strip() if run.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "funnelpulse_dagster", "benchmarks/*.py")
    return f"{commit}+changes" if changed else commit


def table(title: str, header: list[str], rows: list[list]) -> dict:
    """One table of figures as the page shows it."""
    return {"title": title, "header": header, "rows": [[_cell(v) for v in row] for row in rows]}


def flat(title: str, figures: dict, labels: dict[str, str] | None = None) -> dict:
    """A benchmark's figures as a two-column table, nested keys joined with ` / `."""
    rows: list[list] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix} / {key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, inner in enumerate(value, start=1):
                walk(f"{prefix} {i}", inner)
        else:
            rows.append([(labels or {}).get(prefix, prefix), value if value is not None else "–"])

    walk("", figures)
    return table(title, ["figure", "value"], rows)


def _cell(value) -> str:
    if isinstance(value, bool):  # before int: a bool is an int
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def record(
    name: str, tables: list[dict], notes: list[str] | None = None, argv: list[str] | None = None
) -> Path:
    """Keep one benchmark's figures and render the page again."""
    if name not in {section[0] for section in SECTIONS}:
        raise ValueError(f"{name!r} has no section on the page (benchmarks/figures.py SECTIONS)")
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    command = shlex.join([".venv/bin/python", f"benchmarks/{script.name}", *argv[1:]])
    result = {
        "command": command,
        "code": code_version(),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "tables": tables,
        "notes": notes or [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    PAGE.write_text(render())
    print(f"figures recorded in {path.relative_to(REPO)}; {PAGE.relative_to(REPO)} rendered again")
    return path


def method(script: str) -> str:
    """A benchmark script's docstring without its usage lines: what it measures, and how."""
    docstring = ast.get_docstring(ast.parse((REPO / "benchmarks" / script).read_text())) or ""
    paragraphs = [
        p for p in docstring.split("\n\n") if not all(line.startswith("    ") for line in p.splitlines())
    ]
    return "\n\n".join(paragraphs).strip()


def _markdown_table(t: dict) -> list[str]:
    lines = [f"**{t['title']}**", "", "| " + " | ".join(t["header"]) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(t["header"]))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in t["rows"]]
    return [*lines, ""]


def _machine_line(m: dict) -> str:
    versions = ", ".join(f"{k} {m[k]}" for k in _VERSIONS if k in m)
    return (
        f"{m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}; {m['os']}, Python {m['python']}, {versions}"
    )


def render() -> str:
    lines = [
        "# Performance",
        "",
        "Written by the benchmarks in `benchmarks/` (`benchmarks/figures.py`): each run of one records",
        "its figures in `benchmarks/results/` and renders this page again. Every section says what its",
        "benchmark measures, the command, the machine and when; to refresh a section, run its command.",
        "Earlier figures, and how each change moved them, are in the repository's history.",
        "",
    ]
    for name, title, script in SECTIONS:
        lines += [f"## {title}", "", method(script), ""]
        path = RESULTS / f"{name}.json"
        if not path.exists():
            lines += [f"Not recorded yet: run `.venv/bin/python benchmarks/{script}`.", ""]
            continue
        result = json.loads(path.read_text())
        lines += [
            f"- command: `{result['command']}`, at commit `{result.get('code', 'unknown')}`",
            f"- machine: {_machine_line(result['machine'])}",
            f"- measured: {result['measured_at']}",
            "",
        ]
        for t in result["tables"]:
            lines += _markdown_table(t)
        # notes are Markdown lines as the benchmark wrote them (the anomaly report's tables)
        lines += [*result["notes"], *([""] if result["notes"] else [])]
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:  # the page is what the results render (test_docs.py runs this)
        if PAGE.read_text() != render():
            print(
                f"{PAGE.relative_to(REPO)} differs from what {RESULTS.relative_to(REPO)}/ renders",
                file=sys.stderr,
            )
            sys.exit(1)
        sys.exit(0)
    PAGE.write_text(render())
    print(f"{PAGE.relative_to(REPO)} rendered from {RESULTS.relative_to(REPO)}/")
