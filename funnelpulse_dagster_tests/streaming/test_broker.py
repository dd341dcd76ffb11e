"""The local Apache Kafka broker starts whatever random cluster id its first start draws."""

from __future__ import annotations

import uuid

import pytest

from funnelpulse_dagster.streaming import broker
from funnelpulse_dagster_tests.live import free_port

pytestmark = pytest.mark.slow  # starts a broker JVM


def test_a_cluster_id_that_starts_with_a_dash_formats_and_serves(tmp_path, monkeypatch):
    # 0xF8 as the first byte makes the URL-safe base64 id start with "-" (1 start in 64 draws one)
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(range(15)))
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: dashed)
    servers = f"127.0.0.1:{free_port()}"
    broker.start(tmp_path, servers, kind="kafka")
    try:
        meta = next(tmp_path.rglob("meta.properties")).read_text()
        assert "cluster.id=-" in meta
    finally:
        assert broker.stop(tmp_path)
