#!/usr/bin/env bash
# Creates .venv and installs FunnelPulse with its pinned dependencies (Spark and its Java
# runtime come from wheels: no system JDK), then the pinned JVM artifacts. Safe to run again:
# it skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" - <<'PY'
import sys
if not ((3, 11) <= sys.version_info[:2] < (3, 13)):
    sys.exit(f"FunnelPulse needs Python 3.11 or 3.12, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.funnelpulse-installed
want="$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing dependencies (first run downloads about 700 MB)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[dev]"
  echo "$want" > "$stamp"
fi
# The pinned JVM artifacts (Spark's Kafka source, the tests' Apache Kafka broker):
# coordinates and checksums in funnelpulse_dagster/runtime/jvm/artifacts.lock.json, fetched once into
# .venv/share/funnelpulse/jars; runs never download anything.
.venv/bin/python -m funnelpulse_dagster.runtime.jvm.artifacts fetch

# Local Dagster instance under FUNNELPULSE_HOME (run history, logs, schedules' state).
export FUNNELPULSE_HOME="${FUNNELPULSE_HOME:-$HOME/funnelpulse}"
mkdir -p "$FUNNELPULSE_HOME/dagster" "$FUNNELPULSE_HOME/data_raw"
cp dagster.yaml "$FUNNELPULSE_HOME/dagster/dagster.yaml"
