"""The open state of the live funnel (transforms/live.py, published by the ingest query) on the real
broker and Spark: it equals an independent recount of the events sent so far (pandas), survives a
restart unchanged, rolls over when the watermark closes an hour (the closed hour leaves the open
view and lands in the closed table with the same numbers), and is served by the API."""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import datetime, timedelta

import pandas as pd
import pytest

from funnelpulse_dagster.lakehouse.lake import Lake
from funnelpulse_dagster.serving import queries
from funnelpulse_dagster.serving.store import LakeStore
from funnelpulse_dagster.streaming.job import run_stream
from funnelpulse_dagster.tables import (
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    LIVE_MINUTE_FUNNEL,
    LIVE_OPEN_HOURLY_BRAND,
)
from funnelpulse_dagster_tests.live import kafka as kafka_for

pytestmark = pytest.mark.slow  # real brokers and streaming runs

HOUR = datetime(2019, 10, 7, 14)
BRANDS = ["acme", " Acme ", "zeta", None]


def _events(start: datetime, count: int, seed: int) -> list[dict]:
    """Hand-made traffic in one hour: sessions that view, cart and buy, mixed brands (spelled two
    ways), a no-brand product, duplicates, a zero price and an unknown event type."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        session = f"s{seed}-{rng.randrange(40)}"
        kind = rng.choices(["view", "cart", "purchase", "remove_from_cart"], [60, 25, 10, 5])[0]
        events.append(
            {
                "event_time": (start + timedelta(seconds=rng.randrange(3600))).strftime(
                    "%Y-%m-%d %H:%M:%S UTC"
                ),
                "event_type": kind,
                "product_id": rng.randrange(1, 30),
                "category_id": 5,
                "category_code": None,
                "brand": rng.choice(BRANDS),
                "price": round(rng.uniform(1, 60), 2),
                "user_id": 1000 + int(session.split("-")[1]),
                "user_session": session,
            }
        )
    events.append(dict(events[0]))  # an exact duplicate: counted once
    events.append({**events[1], "price": 0.0, "product_id": 99})  # breaks a silver rule
    events.append({**events[2], "event_type": "wishlist", "product_id": 98})  # unknown type
    return events


def _recount(events: list[dict]) -> pd.DataFrame:
    """Per UTC hour × brand, written apart from the code: silver's rules, de-duplication on the
    event key, lower(trim(brand)), event counts, revenue, distinct viewing / purchasing sessions."""
    frame = pd.DataFrame(events)
    frame["event_time"] = pd.to_datetime(frame["event_time"].str.removesuffix(" UTC"))
    frame = frame[
        frame["event_type"].isin(["view", "cart", "remove_from_cart", "purchase"]) & (frame["price"] > 0)
    ]
    frame = frame.drop_duplicates(["event_time", "user_id", "user_session", "product_id", "event_type"])
    frame["brand"] = frame["brand"].str.strip().str.lower().replace("", None)
    frame["window_start"] = frame["event_time"].dt.floor("h")
    rows = []
    for (start, brand), group in frame.groupby(["window_start", frame["brand"].fillna("∅")]):
        kinds = group["event_type"].value_counts()
        rows.append(
            {
                "window_start": start,
                "brand": None if brand == "∅" else brand,
                "views": int(kinds.get("view", 0)),
                "carts": int(kinds.get("cart", 0)),
                "purchases": int(kinds.get("purchase", 0)),
                "revenue": round(float(group.loc[group["event_type"] == "purchase", "price"].sum()), 2),
                **{
                    f"{step}_{actors}": group.loc[group["event_type"] == step, column].nunique()
                    for column, actors in (("user_session", "sessions"), ("user_id", "users"))
                    for step in ("view", "cart", "purchase")
                },
            }
        )
    return (
        pd.DataFrame(rows).sort_values(["window_start", "brand"], na_position="last").reset_index(drop=True)
    )


def _state(spark, lake: Lake, table) -> tuple[int, pd.DataFrame]:
    frame = lake.read(spark, table).toPandas()
    version = int(frame["version"].max())
    return version, frame[frame["version"] == version].drop(columns="version")


def _hourly(frame: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "window_start",
        "brand",
        "views",
        "carts",
        "purchases",
        "revenue",
        "view_sessions",
        "cart_sessions",
        "purchase_sessions",
        "view_users",
        "cart_users",
        "purchase_users",
    ]
    out = frame[columns].copy()
    out["revenue"] = out["revenue"].astype(float).round(2)
    out["window_start"] = pd.to_datetime(out["window_start"])
    return out.sort_values(["window_start", "brand"], na_position="last").reset_index(drop=True)


def _send(kafka, events: list[dict]) -> None:
    producer = kafka.producer()
    for event in events:
        producer.produce(kafka.topic, value=json.dumps(event).encode(), key=event["user_session"].encode())
    assert producer.flush(10) == 0


@pytest.fixture()
def live_stream(spark, tmp_path, broker):
    """A topic on each broker kind, and a run of the streaming job over it."""
    return _live_stream(spark, tmp_path, broker)


@pytest.fixture()
def live_stream_on_kafka(spark, tmp_path, bootstrap):
    """The same on Apache Kafka alone, for what the broker's kind cannot change."""
    return _live_stream(spark, tmp_path, bootstrap)


def _live_stream(spark, tmp_path, broker):
    kafka = kafka_for(broker, f"open-{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic()
    lake, checkpoints = Lake(str(tmp_path / "tables")), str(tmp_path / "cp")
    options = kafka.spark_stream_source()

    def run():
        return run_stream(spark, options, lake, checkpoints, log=lambda _: None)

    return kafka, lake, run


def test_open_hour_equals_a_recount_survives_a_restart_and_rolls_over(spark, tmp_path, live_stream):
    kafka, lake, run = live_stream
    first = _events(HOUR, 400, seed=1)
    _send(kafka, first)
    run()
    # nothing is closed yet (the watermark is 2 h behind the newest event): all of it is open
    assert lake.read(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND).count() == 0
    version, open_state = _state(spark, lake, LIVE_OPEN_HOURLY_BRAND)
    pd.testing.assert_frame_equal(_hourly(open_state), _recount(first), check_dtype=False)
    newest = max(pd.to_datetime(e["event_time"].removesuffix(" UTC")) for e in first)
    assert set(pd.to_datetime(open_state["as_of"])) == {newest}
    # minute windows: the shop's views per minute equal the recount's
    _, minutes = _state(spark, lake, LIVE_MINUTE_FUNNEL)
    shop = minutes[minutes["scope"] == "shop"].set_index(
        pd.to_datetime(minutes.loc[minutes["scope"] == "shop", "window_start"])
    )
    clean = pd.DataFrame(first)
    clean["t"] = pd.to_datetime(clean["event_time"].str.removesuffix(" UTC"))
    clean = clean[
        clean["event_type"].isin(["view", "cart", "remove_from_cart", "purchase"]) & (clean["price"] > 0)
    ]
    clean = clean.drop_duplicates(["t", "user_id", "user_session", "product_id", "event_type"])
    per_minute = clean[clean["event_type"] == "view"].groupby(clean["t"].dt.floor("min")).size()
    assert shop["views"].sort_index().to_dict() == {
        k: v for k, v in per_minute.sort_index().to_dict().items()
    }
    assert {"acme", "zeta"} <= set(minutes["scope"])  # the top brands beside the shop

    # a restart with nothing new: the same state, not a new one
    run()
    again, same = _state(spark, lake, LIVE_OPEN_HOURLY_BRAND)
    assert again == version
    pd.testing.assert_frame_equal(_hourly(same), _hourly(open_state))

    # events three hours later push the watermark past the first hour's end: it closes
    later = _events(HOUR + timedelta(hours=3), 150, seed=2)
    _send(kafka, later)
    run()
    closed = lake.read(spark, GOLD_STREAM_FUNNEL_HOURLY_BRAND).toPandas()
    pd.testing.assert_frame_equal(_hourly(closed), _recount(first), check_dtype=False)
    # served: the open view holds only the hours after the last closed one, as the recount of
    # the later events says; the closed hour is in the closed part
    store = LakeStore(lake.root, mode="replica", database=tmp_path / "replica.duckdb")
    store.refresh()
    live = queries.live_funnel(store.cursor(), hours=6)
    assert [h["window_start"] for h in live["hours"]] == [HOUR.strftime("%Y-%m-%dT%H:%M:%SZ")]
    opened = live["open"]
    assert opened["provisional"] is True
    expected = _recount(later)
    assert [h["window_start"] for h in opened["hours"]] == [
        (HOUR + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ]
    assert opened["hours"][0]["views"] == int(expected["views"].sum())
    assert opened["hours"][0]["purchases"] == int(expected["purchases"].sum())
    assert round(opened["hours"][0]["revenue"], 2) == round(float(expected["revenue"].sum()), 2)
    assert sum(m["views"] for m in opened["minutes"]) > 0
    # older states are pruned: at most three versions stay
    versions = lake.read(spark, LIVE_OPEN_HOURLY_BRAND).select("version").distinct().count()
    assert 2 <= versions <= 3


def _within_half_an_hour(event: dict) -> dict:
    """The event moved into the first half of its hour (minutes 00-29)."""
    text = event["event_time"]  # YYYY-MM-DD HH:MM:SS UTC
    return {**event, "event_time": f"{text[:14]}{int(text[14]) % 3}{text[15:]}"}


def test_a_reader_never_sees_a_torn_open_state(spark, tmp_path, live_stream_on_kafka):
    """A reader polls the served open state while a continuous stream publishes new versions:
    every version it is given has its hours and its minutes, and they agree (the shop's views
    per minute add up to the open hours' views). A version whose minutes are not published yet
    is not served: the previous one is."""
    import threading
    import time

    kafka, lake, _ = live_stream_on_kafka
    options = kafka.spark_stream_source()
    errors: list[BaseException] = []
    enough = threading.Event()

    class Enough(Exception):
        """Ends the continuous stream once the reader has seen enough versions."""

    def stop_when_enough() -> None:
        if enough.is_set():
            raise Enough

    def stream() -> None:
        try:
            run_stream(
                spark, options, lake, str(tmp_path / "cp"), available_now=False,
                processing_time_seconds=1, max_runtime_seconds=300, log=lambda _: None,
                on_tick=stop_when_enough,
            )  # fmt: skip
        except Enough:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    store = LakeStore(lake.root, mode="replica", database=tmp_path / "reader.duckdb")
    seen: dict[int, tuple[int, int]] = {}
    sent = 0
    # paced by what the reader sees, not by the clock (a loaded machine publishes more slowly):
    # the next burst goes once the reader has seen a version for each burst sent
    deadline = time.monotonic() + 240
    while len(seen) < 4 and time.monotonic() < deadline and streamer.is_alive():
        if len(seen) >= sent:
            # bursts within half an hour, so the served last hour of minutes holds all of them
            _send(kafka, [_within_half_an_hour(e) for e in _events(HOUR, 150, seed=10 + sent)])
            sent += 1
        store.refresh()
        state = queries.live_funnel(store.cursor(), hours=6)["open"]
        if state.get("state_version") is not None:
            hours_views = sum(h["views"] for h in state["hours"])
            minute_views = sum(m["views"] for m in state["minutes"])
            assert state["hours"] and state["minutes"], f"torn state {state['state_version']}: {state}"
            assert hours_views == minute_views, (state["state_version"], hours_views, minute_views)
            seen[state["state_version"]] = (hours_views, minute_views)
        time.sleep(0.2)
    enough.set()
    streamer.join(120)
    assert not streamer.is_alive(), "the stream did not stop"
    assert not errors, errors
    assert len(seen) >= 3, f"the reader saw too few versions to tell: {seen}"

    # the publisher's in-between moment, made to last: the hours of a newer version and no minutes
    # (the newest version served once the stream has stopped: it may have published one more
    # after the reader's last look)
    store.refresh()
    newest = queries.live_funnel(store.cursor(), hours=6)["open"]["state_version"]
    assert newest >= max(seen)
    hours = lake.read(spark, LIVE_OPEN_HOURLY_BRAND).filter(f"version = {newest}")
    newer = hours.withColumn("version", hours["version"] + 1000).toArrow()
    lake.replace_version(newer, LIVE_OPEN_HOURLY_BRAND, newest + 1000, keep=2000)
    store.refresh()
    assert queries.live_funnel(store.cursor(), hours=6)["open"]["state_version"] == newest


def _contributions(spark, events: list[dict]):
    """The events as the open-state query's contribution rows (a batch frame)."""
    from funnelpulse_dagster.tables import BRONZE_EVENTS, RAW_COLUMNS
    from funnelpulse_dagster.transforms.live import open_contributions
    from funnelpulse_dagster.transforms.silver import apply_silver_rules, normalise_events

    frame = pd.DataFrame(events)
    frame["event_time"] = pd.to_datetime(frame["event_time"].str.removesuffix(" UTC"))
    frame["price"] = frame["price"].map(lambda p: f"{p:.2f}")
    typed = spark.createDataFrame(frame[list(RAW_COLUMNS)].astype(object).where(frame.notna(), None).values.tolist(),
                                  schema=", ".join(f"{c} string" for c in RAW_COLUMNS))  # fmt: skip
    typed = typed.select(*[typed[c].cast(BRONZE_EVENTS.schema[c].dataType).alias(c) for c in RAW_COLUMNS])
    return open_contributions(typed.transform(apply_silver_rules).transform(normalise_events))


def _open_hours(cells) -> pd.DataFrame:
    import duckdb

    from funnelpulse_dagster.transforms.live import open_hours_sql

    with duckdb.connect() as con:
        con.register("cells", cells)
        return con.sql(open_hours_sql("cells", 1)).df()


def test_open_cells_count_each_actor_kind_apart(spark):
    """The transforms alone, on a batch frame: a session and a user that share a text still
    count once each, and summing an hour's minute cells gives the recount's distinct numbers."""
    from funnelpulse_dagster.streaming.open_state import _naive_times, cell_totals, merge_cells

    events = _events(HOUR, 300, seed=3)
    events += [  # session "7" of user 8 and session "x" of user 7: two sessions, two users
        {**events[0], "user_session": "7", "user_id": 8, "event_type": "view", "brand": "acme"},
        {**events[0], "user_session": "x", "user_id": 7, "event_type": "view", "brand": "acme"},
    ]
    cells = cell_totals(_naive_times(_contributions(spark, events).toArrow()))
    hours = _open_hours(merge_cells(None, cells))
    pd.testing.assert_frame_equal(_hourly(hours), _recount(events), check_dtype=False)


def test_the_sink_counts_each_key_once_across_batches_a_rerun_and_a_new_process(spark, tmp_path):
    """The open-state sink fed batch frames by hand: keys repeated across batches count once, a
    batch re-run after a crash half-way (its keys written, its state not published) gives the same
    state, a new process reads the counted keys back from their files, a late row (at or before
    the watermark of the batches before it) is not counted, and the keys of an hour the watermark
    has passed are forgotten. The open hours equal the recount."""
    from funnelpulse_dagster.streaming import open_state

    events = _events(HOUR, 600, seed=4)
    parts = [events[:250], events[200:450], events[400:]]  # each overlaps the one before
    lake = Lake(str(tmp_path / "tables"))
    sink = open_state.OpenStateSink(lake, str(tmp_path / "cp_cells"))
    sink(_contributions(spark, parts[0]), 0)

    class Crash(Exception):
        pass

    def crash(*_args) -> None:
        raise Crash

    publish = open_state.OpenStateSink.publish
    open_state.OpenStateSink.publish = crash
    try:
        with pytest.raises(Crash):
            sink(_contributions(spark, parts[1]), 1)
    finally:
        open_state.OpenStateSink.publish = publish
    assert any(n.startswith("keys-000000000001-") for n in os.listdir(tmp_path / "cp_cells"))
    sink(_contributions(spark, parts[1]), 1)  # the re-run
    open_state._Keys._by_root.clear()  # a new process: the keys come back from their files
    late = {**events[5], "event_time": "2019-10-07 11:59:59 UTC", "product_id": 77}  # 2 h before
    sink(_contributions(spark, [*parts[2], late]), 2)

    version, state = _state(spark, lake, LIVE_OPEN_HOURLY_BRAND)
    assert version == 2
    pd.testing.assert_frame_equal(_hourly(state), _recount(events), check_dtype=False)

    # three hours later the watermark (the newest cell time less 2 h) passes the first hour: its
    # keys and key files are forgotten, and a repeat of its events is late, not counted again
    later = _events(HOUR + timedelta(hours=3), 200, seed=5)
    sink(_contributions(spark, later), 3)
    held = open_state.held_keys(str(tmp_path / "cp_cells"))
    assert held == len(_contributions(spark, later).select("dedup_key").distinct().collect())
    assert sorted(n[:17] for n in os.listdir(tmp_path / "cp_cells") if n.startswith("keys-")) == [
        "keys-000000000003"
    ]
    sink(_contributions(spark, events[:50]), 4)
    _, state = _state(spark, lake, LIVE_OPEN_HOURLY_BRAND)
    pd.testing.assert_frame_equal(_hourly(state), _recount(events + later), check_dtype=False)
