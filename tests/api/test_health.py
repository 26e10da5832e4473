"""Liveness and readiness with Postgres and Redis up."""

from __future__ import annotations


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status == 200 and response.content_type == "application/json"
    assert (await response.json())["status"] == "ok"


async def test_readyz(client):
    response = await client.get("/readyz")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_health_needs_no_token_and_ignores_a_bad_one(client):
    for path in ("/healthz", "/readyz"):
        response = await client.get(path, headers={"Authorization": "Bearer nonsense"})
        assert response.status == 200
