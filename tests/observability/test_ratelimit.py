"""RATE_LIMIT_PER_MINUTE: a fixed one-minute window per token (anonymous callers: per client IP)
counted in Redis; 429 JSON with Retry-After and X-RateLimit-* headers; off by default; fails open."""

from __future__ import annotations

import pytest
import redis as redis_sync

from config import Settings
from service.app import create_app
from service.observability.ratelimit import RATE_LIMITER, rate_limit_middleware
from tests.helpers import bearer
from tests.observability.conftest import CLOSED_REDIS

LIMIT = 3
# 10 s into a window: its end is 50 s away.
NOW = 60.0 * 28_000_000 + 10


@pytest.fixture
def settings_overrides():
    return {"rate_limit_per_minute": LIMIT}


@pytest.fixture
def limited(client):
    client.app[RATE_LIMITER].clock = lambda: NOW
    return client


def limit_headers(response) -> tuple[str | None, str | None]:
    return response.headers.get("X-RateLimit-Limit"), response.headers.get("X-RateLimit-Remaining")


async def test_429_after_the_limit_with_its_headers(limited, alice, bob):
    for remaining in ("2", "1", "0"):
        response = await limited.get("/api/videos", headers=bearer(alice))
        assert response.status == 200 and limit_headers(response) == ("3", remaining)

    refused = await limited.get("/api/videos", headers=bearer(alice))
    assert refused.status == 429 and refused.content_type == "application/json"
    assert await refused.json() == {"error": "Too many requests", "message": "More than 3 requests a minute; retry in 50 s"}
    assert refused.headers["Retry-After"] == "50" and limit_headers(refused) == ("3", "0")
    assert refused.headers["X-Request-ID"]

    # Another token has its own window; the next minute starts afresh.
    assert (await limited.get("/api/videos", headers=bearer(bob))).status == 200
    limited.app[RATE_LIMITER].clock = lambda: NOW + 60
    response = await limited.get("/api/videos", headers=bearer(alice))
    assert response.status == 200 and limit_headers(response) == ("3", "2")


async def test_error_answers_count_and_carry_the_headers(limited, alice):
    missing = await limited.get("/api/video", params={"videoId": "nope"}, headers=bearer(alice))
    assert missing.status in (400, 404) and limit_headers(missing) == ("3", "2")


async def test_anonymous_callers_are_limited_by_address(limited):
    statuses = [(await limited.get("/api/videos")).status for _ in range(LIMIT + 1)]
    assert statuses == [401, 401, 401, 429]


async def test_redis_keys_hold_no_token(limited, alice, settings):
    await limited.get("/api/videos", headers=bearer(alice))
    await limited.get("/api/videos")
    keys = sorted(k.decode() for k in redis_sync.Redis.from_url(settings.redis_url).keys("capvid:ratelimit:*"))
    assert [k.split(":")[2] for k in keys] == ["ip", "token"]
    assert not any(alice in k or "127.0.0.1" in k for k in keys)


async def test_health_and_metrics_are_not_limited(limited):
    for _ in range(LIMIT + 2):
        for path in ("/healthz", "/readyz", "/metrics"):
            response = await limited.get(path)
            assert response.status == 200 and limit_headers(response) == (None, None), path


async def test_redis_down_lets_requests_through(aiohttp_client, settings, alice, caplog):
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis_url": CLOSED_REDIS})))
    for _ in range(LIMIT + 2):
        response = await client.get("/api/videos", headers=bearer(alice))
        assert response.status == 200 and limit_headers(response) == (None, None)
    lapses = [r for r in caplog.records if r.name == "capvid.ratelimit"]
    assert len(lapses) == 1 and "not enforced" in lapses[0].getMessage()  # logged once, not per request


async def test_off_by_default(aiohttp_client, settings, alice):
    assert Settings.model_fields["rate_limit_per_minute"].default == 0
    default = settings.model_copy(update={"rate_limit_per_minute": 0})
    client = await aiohttp_client(create_app(default))
    assert rate_limit_middleware not in client.app.middlewares and RATE_LIMITER not in client.app
    for _ in range(LIMIT + 2):
        response = await client.get("/api/videos", headers=bearer(alice))
        assert response.status == 200 and limit_headers(response) == (None, None)
    assert redis_sync.Redis.from_url(settings.redis_url).keys("capvid:ratelimit:*") == []
