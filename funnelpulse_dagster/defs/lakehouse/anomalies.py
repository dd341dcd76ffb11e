"""Anomalies of hourly brand conversion, judged against earlier days only."""

from dagster import AssetDep, TimeWindowPartitionMapping

from funnelpulse_dagster.lib.partitions import ROW_COUNT
from funnelpulse_dagster.lib.quality import explained, incident_list
from funnelpulse_dagster.lib.spark_tables import Built, TableRun, daily_spark_table
from funnelpulse_dagster.rules import EVERY_ANOMALY_EXPLAINED, LOOKBACK_DAYS
from funnelpulse_dagster.tables import (
    BATCH_SOURCE,
    GOLD_ANOMALIES_HOURLY_BRAND,
    GOLD_FUNNEL_HOURLY_BRAND,
    SILVER_EVENTS,
)
from funnelpulse_dagster.transforms.anomalies import anomaly_rows, history_days

# a day's verdicts read that day and the LOOKBACK_DAYS (+1 for the previous evening's evidence)
# before it, never a later day
_TRAILING_WINDOW = TimeWindowPartitionMapping(
    start_offset=-(LOOKBACK_DAYS + 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


@daily_spark_table(
    GOLD_ANOMALIES_HOURLY_BRAND,
    deps=[
        AssetDep(GOLD_FUNNEL_HOURLY_BRAND.name, partition_mapping=_TRAILING_WINDOW),
        AssetDep(SILVER_EVENTS.name, partition_mapping=_TRAILING_WINDOW),
    ],
    description="Brand-hours whose conversion broke from the brand's own history (earlier days "
    "only), moved with the rest of the shop's last hours: drop or spike, score, expected vs observed, severity, root-cause hints, and the "
    "seed's z columns for comparison. Each partition's metadata lists that day's drops.",
    group="gold",
    checks=[EVERY_ANOMALY_EXPLAINED],
)
def gold_anomalies_hourly_brand(run: TableRun) -> Built:
    history = history_days(run.days)
    gold = run.read(GOLD_FUNNEL_HOURLY_BRAND, history)
    silver = run.read(SILVER_EVENTS, history)
    with run.phase("detect_and_write"):
        run.write(anomaly_rows(gold, silver, run.days, source=BATCH_SOURCE))
    with run.phase("checks"):
        stored = run.stored().cache()
        by_day_type = stored.groupBy("window_date", "anomaly_type").count().collect()
        incidents = incident_list(stored, run.days)
        checks = [explained(stored)]
        stored.unpersist()
    figures = {
        day: {ROW_COUNT: 0, "rows_out": 0, "drops": 0, "spikes": 0, "history_days_read": len(history)}
        for day in run.days
    }
    for row in by_day_type:
        day = figures[row["window_date"]]
        day[ROW_COUNT] += row["count"]
        day["rows_out"] += row["count"]
        day[f"{row['anomaly_type']}s"] = row["count"]
    for day, found in incidents.items():
        figures[day]["incidents"] = found["incidents"]
    return Built(figures, checks)
