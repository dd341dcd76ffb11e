"""The daily schedule's and the data_raw sensor's requests."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime

from dagster import DagsterInstance, SkipReason, build_schedule_context, build_sensor_context

from funnelpulse_dagster.defs.lakehouse.automation import (
    contiguous_ranges,
    daily_lakehouse_schedule,
    days_owned_by,
    raw_files_sensor,
)
from funnelpulse_dagster.defs.lakehouse.jobs import batch_lakehouse_job
from funnelpulse_dagster.generator import generate
from funnelpulse_dagster.resources import RawDataResource
from funnelpulse_dagster.settings import load_settings

START, END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def test_schedule_builds_yesterday():
    context = build_schedule_context(scheduled_execution_time=datetime(2019, 10, 6, 1, 15, tzinfo=UTC))
    request = daily_lakehouse_schedule(context)
    assert request.partition_key == "2019-10-05"
    assert request.run_key == "daily:2019-10-05"


def test_days_owned_by_file_and_ranges(tmp_path):
    generate(tmp_path, date(2019, 10, 30), 3, seed=1, events_per_day=200)
    assert days_owned_by(str(tmp_path / "2019-Oct.csv")) == {date(2019, 10, 30), date(2019, 10, 31)}
    assert days_owned_by(str(tmp_path / "2019-Nov.csv")) == {date(2019, 11, 1)}
    days = [date(2019, 10, 1), date(2019, 10, 2), date(2019, 10, 3), date(2019, 10, 5)]
    assert contiguous_ranges(days) == [(date(2019, 10, 1), date(2019, 10, 3)), (date(2019, 10, 5),) * 2]


def _evaluate(instance, cursor=None):
    raw_data = RawDataResource(uri=load_settings().raw)
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"raw_data": raw_data})
    return raw_files_sensor(context)


def test_sensor_requests_exactly_the_days_of_new_files(funnelpulse_home):
    raw = funnelpulse_home / "data_raw"
    instance = DagsterInstance.ephemeral()
    assert isinstance(_evaluate(instance), SkipReason)

    generate(raw, date(2019, 10, 30), 3, seed=1, events_per_day=200)
    first = _evaluate(instance)
    ranges = sorted(
        (r.tags[START], r.tags[END], r.tags["funnelpulse/source_file"]) for r in first.run_requests
    )
    assert ranges == [
        ("2019-10-30", "2019-10-31", "2019-Oct.csv"),
        ("2019-11-01", "2019-11-01", "2019-Nov.csv"),
    ]
    assert len({r.run_key for r in first.run_requests}) == 2

    # nothing new: no runs, whatever the interval
    again = _evaluate(instance, first.cursor)
    assert isinstance(again, SkipReason)

    # a new file: only its days
    generate(raw / "more", date(2019, 11, 10), 1, seed=2, events_per_day=200)
    os.replace(raw / "more" / "2019-Nov.csv", raw / "2019-Nov-10.csv")
    third = _evaluate(instance, first.cursor)
    assert [(r.tags[START], r.tags[END]) for r in third.run_requests] == [("2019-11-10", "2019-11-10")]
    assert set(json.loads(third.cursor)) == {"2019-Oct.csv", "2019-Nov.csv", "2019-Nov-10.csv"}

    # a changed file is processed again, under a new run key
    with open(raw / "2019-Nov-10.csv", "a") as fh:
        fh.write("2019-11-11 00:00:01 UTC,view,1,2,,,1.00,3,s\n")
    fourth = _evaluate(instance, third.cursor)
    assert [(r.tags[START], r.tags[END]) for r in fourth.run_requests] == [("2019-11-10", "2019-11-11")]
    assert fourth.run_requests[0].run_key not in {r.run_key for r in third.run_requests}


def test_sensor_and_schedule_target_the_batch_job():
    assert raw_files_sensor.job_name == daily_lakehouse_schedule.job_name == batch_lakehouse_job.name
