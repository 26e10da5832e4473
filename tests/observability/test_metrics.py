"""GET /metrics of the web process: the Prometheus text format, HTTP histograms by route template,
queue and outbox gauges read at scrape time (left out when their server is down), METRICS_TOKEN."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from pydantic import SecretStr

from service.app import create_app
from tests.helpers import bearer, write
from tests.observability.conftest import CLOSED_POSTGRES, CLOSED_REDIS, family_types, value

HTTP = "capvid_http_request_duration_seconds_count"


async def scrape(client: Any, **headers: str) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return str(await response.text())


async def test_requests_are_counted_by_route_template_method_and_status(client, api, alice):
    video = await api.create_video(alice)
    before = await scrape(client)
    ok = await client.get("/api/video", params={"videoId": video["id"]}, headers=bearer(alice))
    denied = await client.get("/api/video", params={"videoId": video["id"]})
    missing = await client.get("/api/no/such/route/" + video["id"])
    assert (ok.status, denied.status, missing.status) == (200, 401, 404)

    after = await scrape(client)
    for labels, calls in [
        ({"route": "/api/video", "method": "GET", "status": "200"}, 1),
        ({"route": "/api/video", "method": "GET", "status": "401"}, 1),  # raised by the handler
        ({"route": "unmatched", "method": "GET", "status": "404"}, 1),  # raised by the router
    ]:
        assert (value(after, HTTP, **labels) or 0) - (value(before, HTTP, **labels) or 0) == calls, labels
    # The raw path, with its id, never becomes a label.
    assert video["id"] not in after
    types = family_types(after)
    assert types["capvid_http_request_duration_seconds"] == "histogram"
    assert types["capvid_event_streams_open"] == "gauge"
    assert value(after, "capvid_event_streams_open") is not None


async def test_queue_depth_and_outbox_backlog_are_read_at_scrape_time(client, settings):
    redis = ArqRedis.from_url(settings.redis_url)
    try:
        for job in ("a", "b"):  # deferred: they stay queued while the test looks
            await redis.enqueue_job("cleanup_storage", "v", {}, _job_id=job, _defer_by=3600,
                                    _queue_name=settings.arq_queue_name)
    finally:
        await redis.aclose()
    text = await scrape(client)
    assert value(text, "capvid_queue_depth") == 2
    assert value(text, "capvid_outbox_backlog") == 0
    assert family_types(text)["capvid_queue_depth"] == "gauge"


async def test_redis_down_leaves_the_queue_depth_out(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis_url": CLOSED_REDIS})))
    # A job request the relay cannot hand over while Redis is away.
    await write(settings, "INSERT INTO outbox (function, video_id, args) VALUES ('transcribe', 'v1', '{}')")
    text = await scrape(client)
    assert value(text, "capvid_queue_depth") is None
    assert value(text, "capvid_outbox_backlog") == 1
    await write(settings, "DELETE FROM outbox")  # nothing left for the relay to retry at shutdown


async def test_postgres_down_leaves_the_outbox_backlog_out(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.model_copy(update={"database_url": CLOSED_POSTGRES})))
    text = await scrape(client)
    assert value(text, "capvid_outbox_backlog") is None
    assert value(text, "capvid_queue_depth") == 0


async def test_metrics_token_is_required_when_set(aiohttp_client, settings):
    secured = settings.model_copy(update={"metrics_token": SecretStr("scrape-secret")})
    client = await aiohttp_client(create_app(secured))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-secret"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401 and await response.json() == {"error": "Unauthorized"}
    text = await scrape(client, Authorization="Bearer scrape-secret")
    assert value(text, "capvid_event_streams_open") is not None


async def test_made_up_methods_do_not_mint_labels(client):
    before = await scrape(client)
    response = await client.request("PROPFIND", "/healthz")
    assert response.status == 405
    after = await scrape(client)
    labels = {"route": "unmatched", "method": "other", "status": "405"}
    assert (value(after, HTTP, **labels) or 0) - (value(before, HTTP, **labels) or 0) == 1
    assert "PROPFIND" not in after
