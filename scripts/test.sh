#!/usr/bin/env bash
# Sets everything up and runs the test suite (real local Spark, real Dagster runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
