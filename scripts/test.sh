#!/usr/bin/env bash
# Sets everything up and runs the test suite twice: Spark in-process, then every test again as
# the client of a real local Spark Connect server (FUNNELPULSE_TEST_SPARK=connect). Set
# FUNNELPULSE_TEST_SPARK yourself to run one mode only. Real Spark, real Dagster runs, the real
# embedded broker; expectations from an independent pandas reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${FUNNELPULSE_TEST_SPARK:-}" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
status=0
echo "== tests, Spark in-process"
FUNNELPULSE_TEST_SPARK=in-process .venv/bin/python -m pytest "$@" || status=$?
echo "== tests, Spark Connect (a local server)"
FUNNELPULSE_TEST_SPARK=connect .venv/bin/python -m pytest "$@" || status=$?
exit "$status"
