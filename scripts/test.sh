#!/usr/bin/env bash
# Sets everything up and runs the test suite twice: Spark in-process, then every test again as
# the client of a real local Spark Connect server (FUNNELPULSE_TEST_SPARK=connect). Set
# FUNNELPULSE_TEST_SPARK yourself to run one mode only. Real Spark, real Dagster runs, the real
# embedded broker; expectations from an independent pandas reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# real components the tests start themselves: PostgreSQL (the deployment test's Dagster storage)
# and Chromium (the dashboard test). Debian packages, installed once when missing (needs root).
need=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need[*]} (Debian packages)"
    # a package script that cannot start a service (no init system) must not stop the tests
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
      echo "warning: installing ${need[*]} failed; the tests that need them will say so" >&2
  else
    echo "warning: ${need[*]} missing and cannot be installed here (not root with apt-get); the tests that need them will fail" >&2
  fi
fi
if [ -n "${FUNNELPULSE_TEST_SPARK:-}" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
status=0
echo "== tests, Spark in-process"
FUNNELPULSE_TEST_SPARK=in-process .venv/bin/python -m pytest "$@" || status=$?
echo "== tests, Spark Connect (a local server)"
FUNNELPULSE_TEST_SPARK=connect .venv/bin/python -m pytest "$@" || status=$?
exit "$status"
