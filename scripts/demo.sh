#!/usr/bin/env bash
# Sets everything up, writes built-in sample data (14 days, unless data_raw/ already has CSVs),
# and runs the platform on it as a user would, through the named Dagster jobs on a persistent
# instance: batch_lakehouse_job for the demo's days, funnel_report_job, then the live path
# (the embedded broker, kafka_replay_job for the last day, one live_funnel_job run).
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
DG=(.venv/bin/dagster job execute -m funnelpulse_dagster.definitions)

if ! ls "$FUNNELPULSE_HOME"/data_raw/*.csv >/dev/null 2>&1; then
  .venv/bin/funnelpulse generate --start "$START" --days "$DAYS" --anomalies 6 --visible-anomalies
fi

echo "== batch_lakehouse_job: bronze → silver → gold → anomalies for $START...$END (one run)"
"${DG[@]}" -j batch_lakehouse_job \
  --tags "{\"dagster/asset_partition_range_start\": \"$START\", \"dagster/asset_partition_range_end\": \"$END\"}"
echo "== funnel_report_job"
"${DG[@]}" -j funnel_report_job

if [ "${DEMO_LIVE:-1}" = "1" ]; then
  echo "== the live path: embedded broker, kafka_replay_job ($END), one live_funnel_job run"
  .venv/bin/funnelpulse broker start
  replay_config="$(mktemp)"
  printf 'ops:\n  replay_bronze_to_kafka:\n    config:\n      start_date: "%s"\n      end_date: "%s"\n' \
    "$END" "$END" > "$replay_config"
  "${DG[@]}" -j kafka_replay_job -c "$replay_config"
  rm -f "$replay_config"
  "${DG[@]}" -j live_funnel_job
fi

.venv/bin/funnelpulse summary
echo
echo "== injected anomalies beside what the detector flagged"
.venv/bin/funnelpulse anomalies
echo
echo "Tables are under ${FUNNELPULSE_LAKE:-$FUNNELPULSE_HOME/tables}."
echo "The funnel report (opens offline): ${FUNNELPULSE_REPORTS:-$FUNNELPULSE_HOME/reports}/funnel_report.html"
echo "The API and the dashboard:"
echo "  .venv/bin/funnelpulse serve        # then http://127.0.0.1:8000/ (API docs at /docs)"
echo "Browse assets, lineage, partitions, checks and the runs above with:"
echo "  FUNNELPULSE_HOME=$FUNNELPULSE_HOME DAGSTER_HOME=$DAGSTER_HOME \\"
echo "  FUNNELPULSE_START_DATE=$FUNNELPULSE_START_DATE FUNNELPULSE_END_DATE=$FUNNELPULSE_END_DATE .venv/bin/dagster dev"
if [ "${DEMO_LIVE:-1}" = "1" ]; then
  echo "The embedded broker keeps running for the Kafka sensor; stop it with: .venv/bin/funnelpulse broker stop"
fi
