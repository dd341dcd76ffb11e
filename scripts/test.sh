#!/usr/bin/env bash
# Sets everything up and runs the test suite in its two Spark passes, side by side: as the
# clients of a real local Spark Connect server (the tests whose code can behave differently
# there), and in-process (the rest, and the few that guard both modes);
# funnelpulse_dagster_tests/conftest.py says how they are chosen.
# Real Spark, real Kafka, real Dagster runs; expectations from an independent pandas reference.
#
#   scripts/test.sh [pytest args]          the whole suite (what CI runs)
#   scripts/test.sh --quick [pytest args]  the quick lane: in-process, no `slow` test
#   FUNNELPULSE_TEST_SPARK=connect scripts/test.sh [pytest args]   one pass only
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then quick=1; else args+=("$arg"); fi
done
bash scripts/setup.sh
# Nothing a test starts may outlive the tests: a local Spark server or a standalone cluster's
# process still running from a pass's folder fails the run (and is stopped).
no_leftovers() {
  local left pattern="funnelpulse_dagster.runtime.spark_server --settings $1|funnelpulse.cluster=$1"
  left="$(pgrep -af "$pattern" || true)"
  [ -z "$left" ] && return 0
  echo "error: Spark servers or cluster processes the tests left running:" >&2
  echo "$left" >&2
  pkill -f "$pattern" || true
  return 1
}
if [ "$quick" = 1 ]; then
  base="$(mktemp -d)"
  status=0
  FUNNELPULSE_TEST_LANE=quick FUNNELPULSE_TEST_SPARK=in-process .venv/bin/python -m pytest --basetemp "$base" -m "not slow and not connect_pass" "${args[@]}" || status=$?
  no_leftovers "$base" || status=1
  exit "$status"
fi
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
# The tests' GCS emulator for Spark's own `gs://` reads and writes through the GCS connector
# (fake-gcs-server serves the JSON API the connector speaks), built once from its pinned Go module.
if [ ! -x .venv/bin/fake-gcs-server ]; then
  if command -v go >/dev/null 2>&1; then
    echo "== building fake-gcs-server (Go module github.com/fsouza/fake-gcs-server@v1.56.1)"
    GOBIN="$PWD/.venv/bin" GOFLAGS=-mod=mod go install github.com/fsouza/fake-gcs-server@v1.56.1 ||
      echo "warning: building fake-gcs-server failed; the test of gs:// inside Spark will say so" >&2
  else
    echo "warning: no Go toolchain to build fake-gcs-server; the test of gs:// inside Spark will say so" >&2
  fi
fi
if [ -n "${FUNNELPULSE_TEST_SPARK:-}" ]; then
  base="$(mktemp -d)"
  status=0
  .venv/bin/python -m pytest --basetemp "$base" "${args[@]}" || status=$?
  no_leftovers "$base" || status=1
  exit "$status"
fi
# Both passes at once, on their own temporary folders: much of each is waiting (JVM and Kafka
# start-up, subprocess runs, polling), which the other fills. The Connect pass's output follows.
status=0
connect_log="$(mktemp)"
trap 'rm -f "$connect_log"' EXIT
connect_base="$(mktemp -d)"
in_process_base="$(mktemp -d)"
FUNNELPULSE_TEST_SPARK=connect .venv/bin/python -m pytest -p no:cacheprovider \
  --basetemp "$connect_base" "${args[@]}" >"$connect_log" 2>&1 &
connect_pid=$!
echo "== tests, Spark in-process (the Spark Connect pass runs beside it)"
FUNNELPULSE_TEST_SPARK=in-process .venv/bin/python -m pytest --basetemp "$in_process_base" "${args[@]}" || status=$?
wait "$connect_pid" || status=$?
echo "== tests, Spark Connect (a local server)"
cat "$connect_log"
no_leftovers "$in_process_base" || status=1
no_leftovers "$connect_base" || status=1
exit "$status"
