"""silver_events: clean, normalised, de-duplicated events."""

from dagster import MetadataValue

from funnelpulse_dagster.lib.partitions import ROW_COUNT
from funnelpulse_dagster.lib.quality import (
    rows_by_day,
    shared_key_hashes,
    silver_quality,
    silver_stored_summary,
    silver_violation_counts,
)
from funnelpulse_dagster.lib.spark_tables import Built, TableRun, daily_spark_table
from funnelpulse_dagster.rules import SILVER_KEY_RULE, SILVER_ROW_RULES, SILVER_RULE_NAMES
from funnelpulse_dagster.runtime.spark_session import side_by_side
from funnelpulse_dagster.tables import BRONZE_EVENTS, SILVER_EVENTS
from funnelpulse_dagster.transforms.silver import silver_rule_counts, to_silver


@daily_spark_table(
    SILVER_EVENTS,
    deps=[BRONZE_EVENTS.name],
    description="Clean events: silver rules applied, brand/category normalised, price band, "
    "data-quality flags, de-duplicated on the event key.",
    group="silver",
    checks=[*SILVER_ROW_RULES, SILVER_KEY_RULE],
    input_table=BRONZE_EVENTS,
)
def silver_events(run: TableRun) -> Built:
    bronze = run.read(BRONZE_EVENTS)
    # the rules' counts (a separate aggregate, cheaper than observe() here) are counted while
    # the write runs, and the stored rows' summary while their keys are checked
    with run.phase("transform_and_write"):
        rule_rows, _ = side_by_side(
            lambda: silver_rule_counts(bronze).collect(),
            lambda: run.write(to_silver(bronze, run.sized_for.one_task_per_day)),
        )
    with run.phase("read_back_counts"):
        stored_silver = run.stored()
        summary, shared_hashes = side_by_side(
            lambda: silver_stored_summary(stored_silver), lambda: shared_key_hashes(stored_silver)
        )
        stored = rows_by_day(summary, run.days)
    by_day = {day: dict.fromkeys((*SILVER_RULE_NAMES, "passed"), 0) for day in run.days}
    for row in rule_rows:
        by_day[row["event_date"]][row["rule"]] = row["count"]
    figures = {}
    for day, counts in by_day.items():
        removed = {name: counts[name] for name in SILVER_RULE_NAMES}
        removed[SILVER_KEY_RULE.name] = counts["passed"] - stored[day]
        figures[day] = {
            ROW_COUNT: stored[day],
            "rows_in": sum(counts.values()),
            "rows_out": stored[day],
            "rows_removed_by_rule": MetadataValue.json(removed),
        }
    with run.phase("checks"):
        checks = silver_quality(silver_violation_counts(stored_silver, summary, shared_hashes), stored_silver)
    return Built(figures, checks)
