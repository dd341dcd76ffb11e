#!/usr/bin/env bash
# Sets everything up, writes built-in sample data (14 days, unless data_raw/ already has CSVs),
# and runs the platform on it as a user would, through the named Dagster jobs on a persistent
# instance: batch_lakehouse_job for the demo's days, funnel_report_job, then the live path
# (the local Apache Kafka broker, kafka_replay_job for the last day, one live_funnel_job run).
#
# The partitions are bounded to the demo's days (FUNNELPULSE_END_DATE), so the UI shows those
# days, not years of empty ones; `dagster dev` must see the same variables (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FUNNELPULSE_HOME="${FUNNELPULSE_HOME:-$HOME/funnelpulse}"
export DAGSTER_HOME="$FUNNELPULSE_HOME/dagster"
START="${DEMO_START:-2019-10-01}"
DAYS="${DEMO_DAYS:-14}"
END="$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$START') + d.timedelta(days=$DAYS - 1))")"
export FUNNELPULSE_START_DATE="${FUNNELPULSE_START_DATE:-$START}"
export FUNNELPULSE_END_DATE="${FUNNELPULSE_END_DATE:-$END}"
# each job as one run the UI places on its timeline (code location `funnelpulse`)
LAUNCH=(.venv/bin/funnelpulse launch)

if ! ls "$FUNNELPULSE_HOME"/data_raw/*.csv >/dev/null 2>&1; then
  .venv/bin/funnelpulse generate --start "$START" --days "$DAYS" --anomalies 6 --visible-anomalies \
    ${DEMO_EVENTS_PER_DAY:+--events-per-day "$DEMO_EVENTS_PER_DAY"}
fi

echo "== batch_lakehouse_job: bronze → silver → gold → anomalies for $START...$END (one run)"
"${LAUNCH[@]}" --job batch_lakehouse_job --partition-range "$START...$END"
echo "== funnel_report_job"
"${LAUNCH[@]}" --job funnel_report_job

if [ "${DEMO_LIVE:-1}" = "1" ]; then
  echo "== the live path: the local broker, kafka_replay_job ($END), one live_funnel_job run"
  .venv/bin/funnelpulse broker start
  "${LAUNCH[@]}" --job kafka_replay_job --config-json \
    "{\"ops\": {\"replay_bronze_to_kafka\": {\"config\": {\"start_date\": \"$END\", \"end_date\": \"$END\"}}}}"
  "${LAUNCH[@]}" --job live_funnel_job
fi

.venv/bin/funnelpulse summary
echo
echo "== injected anomalies beside what the detector flagged"
.venv/bin/funnelpulse anomalies
echo
# Every hint below works as printed in a new shell: it carries the demo's configuration (home,
# days, broker, Spark) itself.
REPO="$(pwd)"
ENVS="$(env | grep -E '^(FUNNELPULSE_[A-Z_]+|DAGSTER_HOME)=' | sort | while IFS='=' read -r k v; do printf '%s=%q ' "$k" "$v"; done)"
hint() { echo "  cd $(printf %q "$REPO") && $ENVS.venv/bin/$*"; }
echo "Tables are under ${FUNNELPULSE_LAKE:-$FUNNELPULSE_HOME/tables}."
echo "The funnel report (opens offline): ${FUNNELPULSE_REPORTS:-$FUNNELPULSE_HOME/reports}/funnel_report.html"
echo "The API and the dashboard, then http://127.0.0.1:8000/ (API docs at /docs):"
hint funnelpulse serve
echo "Assets, lineage, partitions, checks and the runs above (Overview → Timeline), then http://127.0.0.1:3000:"
hint dagster dev
if [ -z "${FUNNELPULSE_SPARK_REMOTE:-}" ] && [ "${FUNNELPULSE_SPARK_MODE:-local-server}" = "local-server" ]; then
  echo "Spark stays warm for the next runs and stops itself when idle; see it, or stop it now:"
  hint funnelpulse spark status
  hint funnelpulse spark stop
fi
if [ "${DEMO_LIVE:-1}" = "1" ]; then
  echo "The broker keeps running for the Kafka sensor; switch the sensor on, see the topic, stop the broker:"
  hint dagster sensor start -w workspace.yaml kafka_offsets_sensor
  hint funnelpulse broker status
  hint funnelpulse broker stop
fi
