"""Ops routes exist for admin tokens only: others get 404 (not found), no token 401; the page is public."""

from __future__ import annotations

import pytest

from tests.helpers import bearer, query

OPS_ROUTES = [
    ("GET", "/api/ops/queue", {}),
    ("GET", "/api/ops/jobs", {"state": "failed"}),
    ("POST", "/api/ops/retry", {"videoId": "zzzzzzzzzzzzzzz", "kind": "transcription"}),
    ("POST", "/api/ops/requeue-stuck", {}),
]
ids = [f"{method} {path}" for method, path, _ in OPS_ROUTES]


def snapshot(settings) -> dict:
    return {
        "videos": query(settings, "SELECT * FROM videos ORDER BY id"),
        "outbox": query(settings, "SELECT * FROM outbox ORDER BY id"),
    }


@pytest.mark.parametrize("method, path, params", OPS_ROUTES, ids=ids)
async def test_a_user_who_is_not_admin_gets_not_found(client, settings, alice, method, path, params):
    before = snapshot(settings)
    response = await client.request(method, path, params=params, headers=bearer(alice))
    assert response.status == 404
    assert await response.json() == {"error": "Not found"}
    assert snapshot(settings) == before


@pytest.mark.parametrize("method, path, params", OPS_ROUTES, ids=ids)
async def test_no_token_or_a_bad_one_is_unauthorized(client, method, path, params):
    for headers in ({}, {"Authorization": "Bearer cv_not-a-token"}):
        response = await client.request(method, path, params=params, headers=headers)
        assert response.status == 401
        assert await response.json() == {"error": "Unauthorized"}


@pytest.mark.parametrize("method, path, params", OPS_ROUTES, ids=ids)
async def test_an_admin_is_answered(client, admin, method, path, params):
    response = await client.request(method, path, params=params, headers=bearer(admin))
    expected = 404 if path == "/api/ops/retry" else 200  # the retried video does not exist
    assert response.status == expected, await response.text()
    if expected == 404:
        assert await response.json() == {"error": "Video not found"}


async def test_the_dashboard_page_needs_no_token_and_allows_only_its_own_script(client):
    response = await client.get("/ops")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "sessionStorage" in page and "localStorage" not in page and "innerHTML" not in page
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy
    assert response.headers["Cache-Control"] == "no-store"


async def test_ops_routes_are_documented(client):
    spec = await (await client.get("/api/openapi.json")).json()
    for method, path, _ in OPS_ROUTES:
        operation = spec["paths"][path][method.lower()]
        assert {"401", "404"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
    assert spec["paths"]["/ops"]["get"]["security"] == []
    assert "409" in spec["paths"]["/api/ops/retry"]["post"]["responses"]
