"""bronze_events and bronze_quarantine: every input line, typed or quarantined with a reason."""

from collections import Counter

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from pyspark.sql import Observation
from pyspark.sql import functions as F

from funnelpulse_dagster.checks.quality import BRONZE_RECONCILES, input_reconciliation
from funnelpulse_dagster.partitions import (
    daily_partitions,
    partition_days,
    single_run_backfill,
)
from funnelpulse_dagster.resources import LakeResource, RawDataResource, SparkResource
from funnelpulse_dagster.settings import load_settings
from funnelpulse_dagster.tables import BRONZE_EVENTS, BRONZE_QUARANTINE
from funnelpulse_dagster.timing import PhaseTimer
from funnelpulse_dagster.transforms.bronze import (
    INPUT_ROWS,
    QUARANTINED_ROWS,
    bronze_rows,
    collect_quarantined,
    drop_non_records,
    first_date_in_text,
    parse_raw_lines,
    prefilter_lines_for_dates,
    reason_kind,
    restrict_to_dates,
)


@multi_asset(
    specs=[
        AssetSpec(
            BRONZE_EVENTS.name,
            description="One typed row per parsed input line (UTC event_time, 64-bit ids, exact prices).",
            group_name="bronze",
            kinds={"spark", "parquet"},
        ),
        AssetSpec(
            BRONZE_QUARANTINE.name,
            description="One row per input line that could not be parsed, with the raw text and the reason.",
            group_name="bronze",
            kinds={"spark", "parquet"},
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            BRONZE_RECONCILES,
            asset=BRONZE_EVENTS.name,
            blocking=True,
            description="Every input row of the day is in bronze or in quarantine, exactly once.",
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    # `--select '*gold_funnel_hourly_brand'` selects bronze_events without its quarantine twin.
    # Both tables are written whatever is selected (a parse that kept only the good rows would
    # lose the bad ones); only the selected ones are reported as materialized.
    can_subset=True,
)
def bronze(
    context: AssetExecutionContext, spark: SparkResource, lake: LakeResource, raw_data: RawDataResource
):
    timer = PhaseTimer()
    with timer.phase("spark_session"):
        session = spark.spark_session
    days = partition_days(context)
    with timer.phase("list_files"):
        files = lake.list_files(session, raw_data.uri, ".csv")
    if not files:
        raise FileNotFoundError(
            f"no *.csv files under {raw_data.uri}; put the shop's exports there "
            "or create sample data with `funnelpulse generate`"
        )
    # a line with no date of its own belongs to the first dated line of its file (see docs)
    file_first_dates = {f: first_date_in_text(lake.read_head(session, f)) for f in files}

    lines = session.read.text(files).select("value", F.col("_metadata.file_path").alias("source_file"))
    parsed = (
        lines.transform(drop_non_records)
        .transform(prefilter_lines_for_dates, days)
        .transform(parse_raw_lines, file_first_dates, load_settings().start_date)
        .transform(restrict_to_dates, days)
    )
    # One pass: the bronze write also counts the input rows and carries the few quarantined
    # rows back in its metrics (caching the parse or parsing twice cost more; per-day counters
    # in the observation cost 2 s a month, so the total is observed and days come from storage).
    counter = Observation("bronze_input")
    observed_parse = parsed.observe(counter, F.count(F.lit(1)).alias(INPUT_ROWS), collect_quarantined())
    with timer.phase("parse_and_write_bronze"):
        lake.replace_partitions(bronze_rows(observed_parse), BRONZE_EVENTS, days)
    metrics = counter.get
    with timer.phase("write_quarantine"):
        quarantined = [tuple(row) for row in metrics[QUARANTINED_ROWS]]
        lake.replace_partitions(
            session.createDataFrame(quarantined, BRONZE_QUARANTINE.schema), BRONZE_QUARANTINE, days
        )
    input_rows = metrics[INPUT_ROWS]
    reasons = dict(Counter(reason_kind(row.reason) for row in metrics[QUARANTINED_ROWS]))

    with timer.phase("read_back_counts"):
        stored_bronze = lake.partition_counts(session, BRONZE_EVENTS, days)
        stored_quarantine = lake.partition_counts(session, BRONZE_QUARANTINE, days)
    elapsed = timer.total
    context.log.info(f"bronze phases (s): {timer.phases}")
    context.log.info(
        f"bronze: {input_rows} input rows over {len(days)} day(s) -> "
        f"{sum(stored_bronze.values())} bronze, {sum(stored_quarantine.values())} quarantined in {elapsed:.1f}s"
    )
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    if BRONZE_EVENTS.name in selected:
        yield MaterializeResult(
            asset_key=BRONZE_EVENTS.name,
            metadata={
                "rows_in": input_rows,
                "rows_out": sum(stored_bronze.values()),
                "quarantined_rows": sum(stored_quarantine.values()),
                "days": len(days),
                "input_files": MetadataValue.json(files),
                "path": MetadataValue.path(lake.table_uri(BRONZE_EVENTS)),
                "seconds": MetadataValue.float(elapsed),
                "seconds_by_phase": MetadataValue.json(timer.phases),
            },
        )
    if BRONZE_QUARANTINE.name in selected:
        yield MaterializeResult(
            asset_key=BRONZE_QUARANTINE.name,
            metadata={
                "rows_out": sum(stored_quarantine.values()),
                "reasons": MetadataValue.json(dict(sorted(reasons.items()))),
                "path": MetadataValue.path(lake.table_uri(BRONZE_QUARANTINE)),
            },
        )
    if context.selected_asset_check_keys:
        yield input_reconciliation(input_rows, stored_bronze, stored_quarantine)
