#!/usr/bin/env bash
# Sets everything up, writes built-in sample data (14 days, unless data_raw/ already has CSVs)
# and materializes the whole lakehouse for those days through Dagster, then the funnel report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FUNNELPULSE_HOME="${FUNNELPULSE_HOME:-$HOME/funnelpulse}"
export DAGSTER_HOME="$FUNNELPULSE_HOME/dagster"
START="${DEMO_START:-2019-10-01}"
DAYS="${DEMO_DAYS:-14}"
END="$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$START') + d.timedelta(days=$DAYS - 1))")"

if ! ls "$FUNNELPULSE_HOME"/data_raw/*.csv >/dev/null 2>&1; then
  .venv/bin/funnelpulse generate --start "$START" --days "$DAYS" --anomalies 6
fi
.venv/bin/dagster asset materialize -m funnelpulse_dagster.definitions \
  --select 'not group:streaming' --partition-range "$START...$END"
.venv/bin/funnelpulse summary
echo
echo "Tables are under ${FUNNELPULSE_LAKE:-$FUNNELPULSE_HOME/tables}."
echo "The funnel report (opens offline): ${FUNNELPULSE_REPORTS:-$FUNNELPULSE_HOME/reports}/funnel_report.html"
echo "The API and the dashboard:"
echo "  .venv/bin/funnelpulse serve        # then http://127.0.0.1:8000/ (API docs at /docs)"
echo "Browse assets, lineage, partitions and checks with:"
echo "  DAGSTER_HOME=$DAGSTER_HOME .venv/bin/dagster dev"
