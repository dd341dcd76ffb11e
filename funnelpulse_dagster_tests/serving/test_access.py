"""No one in where they don't belong: `funnelpulse serve` listens on loopback unless told
otherwise, refuses any other address without an access token (or an authenticating proxy in
front), and with a token every path answers 401 to a request that does not carry it."""

from __future__ import annotations

import pytest
import uvicorn
from fastapi.testclient import TestClient

from funnelpulse_dagster import cli
from funnelpulse_dagster.serving.app import TOKEN_COOKIE, create_app
from funnelpulse_dagster.serving.store import LakeStore

TOKEN = "s3cret-token-for-tests"
# every route the app has, the dashboard and the docs included
PAGES = ("/", "/static/dashboard.js", "/static/plotly.min.js", "/docs", "/openapi.json")


@pytest.fixture()
def started(monkeypatch, funnelpulse_home) -> list:
    """What `funnelpulse serve` would run, captured instead of listening."""
    runs: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append((app, options)))
    monkeypatch.delenv("FUNNELPULSE_SERVE_TOKEN", raising=False)
    return runs


@pytest.fixture()
def guarded(tmp_path):
    store = LakeStore(str(tmp_path / "lake"), mode="parquet")
    with TestClient(create_app(store, refresh_seconds=None, access_token=TOKEN)) as client:
        yield client
    store.close()


def _every_path(client) -> list[str]:
    """Every path of the API (a path parameter filled with a served table) and the pages."""
    spec = client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return [p.replace("{table}", "gold_funnel_daily_brand") for p in spec["paths"]] + list(PAGES)


def test_serve_binds_loopback_by_default_and_refuses_other_addresses_without_a_token(started, capsys):
    assert cli.main(["serve", "--mode", "parquet"]) == 0
    assert started[-1][1]["host"] == "127.0.0.1"
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        assert cli.main(["serve", "--host", host]) == 2
        assert "refusing to serve" in capsys.readouterr().err
    assert len(started) == 1


def test_serve_beyond_loopback_with_a_token_requires_it(started, monkeypatch):
    monkeypatch.setenv("FUNNELPULSE_SERVE_TOKEN", TOKEN)
    assert cli.main(["serve", "--host", "0.0.0.0", "--mode", "parquet"]) == 0
    app, options = started[-1]
    assert options["host"] == "0.0.0.0"
    with TestClient(app) as client:
        assert client.get("/health").status_code == 401
        assert client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_serve_behind_an_authenticating_proxy_needs_no_token(started):
    assert cli.main(["serve", "--host", "0.0.0.0", "--behind-auth-proxy", "--mode", "parquet"]) == 0
    with TestClient(started[-1][0]) as client:
        assert client.get("/health").status_code == 200


def test_with_a_token_every_path_answers_401_without_it(guarded):
    paths = _every_path(guarded)
    assert len(paths) >= 9 + len(PAGES)
    for path in paths:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = guarded.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
        admitted = guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert admitted.status_code in (200, 422), path  # 422: /api/breakdown needs its dimension


def test_the_dashboard_link_keeps_the_token_in_a_cookie_its_requests_carry(guarded):
    assert guarded.get("/?token=wrong", follow_redirects=False).status_code == 401
    opened = guarded.get(f"/?brand=acme&token={TOKEN}", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"].endswith("/?brand=acme")  # off the address bar
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    # the test client keeps the cookie, as a browser does
    for path in ("/", "/api/live", "/static/dashboard.js"):
        assert guarded.get(path).status_code == 200, path


def test_openapi_says_what_it_enforces(guarded):
    spec = guarded.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        operation = operations["get"]
        assert {"HTTPBearer": []} in operation["security"], path
        assert "401" in operation["responses"], path
