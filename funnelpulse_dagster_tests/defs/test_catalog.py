"""What a Dagster user sees in the catalog: every table's columns, name, URI, owner and tags,
freshness policies where staleness means breakage, code references, described resources, and
partitions bounded to the data when FUNNELPULSE_END_DATE is set."""

from __future__ import annotations

from datetime import date

import pytest

from funnelpulse_dagster.tables import (
    ALL_TABLES,
    GOLD_SESSION_FUNNEL_DAILY,
    GOLD_STREAM_FUNNEL_HOURLY_BRAND,
    GOLD_TABLES,
)


@pytest.fixture(scope="module")
def graph():
    from funnelpulse_dagster.definitions import defs

    return defs.resolve_asset_graph()


def _node(graph, name):
    return graph.get(next(k for k in graph.get_all_asset_keys() if k.to_user_string() == name))


def test_every_table_asset_shows_its_columns_name_and_uri(graph, funnelpulse_home):
    for name, table in ALL_TABLES.items():
        node = _node(graph, name)
        columns = node.metadata["dagster/column_schema"].schema.columns
        assert [(c.name, c.type) for c in columns] == [
            (f.name, f.dataType.simpleString()) for f in table.schema.fields
        ], name
        assert not [c.name for c in columns if not c.description], name  # every column described
        assert node.metadata["dagster/table_name"] == name
        assert node.metadata["dagster/uri"].endswith(f"/{name}")
        assert node.owners == ["team:data-engineering"], name
        assert {"layer", "domain"} <= set(node.tags), name


def test_every_asset_has_an_owner(graph):
    for key in graph.get_all_asset_keys():
        assert graph.get(key).owners == ["team:data-engineering"], key


def test_gold_and_live_tables_have_freshness_policies(graph):
    policies = {name: _node(graph, name).freshness_policy for name in ALL_TABLES}
    for table in (*GOLD_TABLES, GOLD_SESSION_FUNNEL_DAILY):
        assert policies[table.name] is not None, table.name
    assert _node(graph, "funnel_report").freshness_policy is not None
    live = policies[GOLD_STREAM_FUNNEL_HOURLY_BRAND.name]
    daily = policies[GOLD_TABLES[0].name]
    assert live.fail_window.to_timedelta() < daily.fail_window.to_timedelta()
    assert policies["bronze_events"] is None  # bronze follows its inputs, not the clock


def test_every_materializable_asset_links_to_its_code(graph):
    for key in graph.materializable_asset_keys:
        references = graph.get(key).metadata["dagster/code_references"].code_references
        assert references and references[0].file_path.endswith(".py"), key


def test_the_kafka_topic_is_in_the_graph_upstream_of_the_live_tables(graph):
    topic = _node(graph, "kafka_events_topic")
    assert not topic.is_materializable  # observed (sensor, replay, stream runs), never built here
    stream_events = _node(graph, "stream_events")
    assert topic.key in stream_events.parent_keys


def test_every_resource_field_says_what_it_is():
    """The launchpad and the resource page show these descriptions; an undocumented knob is a
    question for whoever deploys it."""
    import inspect

    from dagster import ConfigurableResource

    from funnelpulse_dagster import resources

    classes = [
        cls
        for _, cls in inspect.getmembers(resources, inspect.isclass)
        if issubclass(cls, ConfigurableResource) and cls.__module__.startswith("funnelpulse_dagster")
    ]
    assert len(classes) == 7
    missing = [
        f"{c.__name__}.{f}" for c in classes for f, info in c.model_fields.items() if not info.description
    ]
    assert not missing, missing


def test_partitions_end_where_the_data_ends_when_configured(monkeypatch):
    from funnelpulse_dagster.lib.partitions import _daily_partitions
    from funnelpulse_dagster.settings import load_settings

    monkeypatch.setenv("FUNNELPULSE_START_DATE", "2019-10-01")
    monkeypatch.setenv("FUNNELPULSE_END_DATE", "2019-10-14")
    keys = _daily_partitions().get_partition_keys()
    assert (len(keys), keys[0], keys[-1]) == (14, "2019-10-01", "2019-10-14")
    monkeypatch.delenv("FUNNELPULSE_END_DATE")
    assert _daily_partitions().get_partition_keys()[-1] >= date.today().isoformat()
    monkeypatch.setenv("FUNNELPULSE_END_DATE", "2019-09-30")
    with pytest.raises(ValueError, match="FUNNELPULSE_END_DATE"):
        load_settings()
