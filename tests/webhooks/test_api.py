"""Creating, listing and deleting webhooks: owner-scoped, the secret shown once, bad input a 400."""

from __future__ import annotations

import pytest

from tests.api.common import expect_bad_request, expect_error
from tests.helpers import bearer, query
from tests.webhooks.conftest import create_webhook

WEBHOOK_NOT_FOUND = {"error": "Webhook not found"}
URL = "http://127.0.0.1:9/hook"


async def test_create_shows_the_secret_once(client, settings, alice):
    created = await create_webhook(client, alice, URL, ["transcription.complete", "video.deleted"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["url"] == URL and created["events"] == ["transcription.complete", "video.deleted"]
    assert created["disabledAt"] is None and created["disabledReason"] is None
    row = query(settings, "SELECT * FROM webhooks")[0]
    assert (str(row["id"]), row["secret"]) == (created["id"], created["secret"])

    listed = await client.get("/api/webhooks", headers=bearer(alice))
    assert listed.status == 200
    body = await listed.json()
    assert body == {"webhooks": [{k: v for k, v in created.items() if k != "secret"}]}
    assert created["secret"] not in await listed.text()


async def test_duplicate_event_types_are_kept_once(client, alice):
    created = await create_webhook(client, alice, URL, ["ai.complete", "ai.complete", "*"])
    assert created["events"] == ["ai.complete", "*"]


async def test_each_user_sees_and_deletes_only_their_own(client, settings, alice, bob):
    alices = await create_webhook(client, alice, URL)
    bobs = await create_webhook(client, bob, URL)

    listed = await (await client.get("/api/webhooks", headers=bearer(bob))).json()
    assert [w["id"] for w in listed["webhooks"]] == [bobs["id"]]

    for path in ["/api/webhooks", "/api/webhooks/deliveries"]:
        method = "DELETE" if path == "/api/webhooks" else "GET"
        theirs = await client.request(method, path, params={"webhookId": alices["id"]}, headers=bearer(bob))
        await expect_error(theirs, 404, WEBHOOK_NOT_FOUND)
        unknown = await client.request(method, path, params={"webhookId": "999999"}, headers=bearer(bob))
        await expect_error(unknown, 404, WEBHOOK_NOT_FOUND)
    assert len(query(settings, "SELECT id FROM webhooks")) == 2

    deleted = await client.delete("/api/webhooks", params={"webhookId": alices["id"]}, headers=bearer(alice))
    assert deleted.status == 204
    assert [str(r["id"]) for r in query(settings, "SELECT id FROM webhooks")] == [bobs["id"]]
    again = await client.delete("/api/webhooks", params={"webhookId": alices["id"]}, headers=bearer(alice))
    await expect_error(again, 404, WEBHOOK_NOT_FOUND)


@pytest.mark.parametrize(
    "body",
    [
        {"url": URL},
        {"events": ["*"]},
        {"url": URL, "events": []},
        {"url": URL, "events": ["video.created"]},
        {"url": URL, "events": "*"},
        {"url": URL, "events": ["*"], "secret": "mine"},
        {"url": 42, "events": ["*"]},
        {"url": "not a url", "events": ["*"]},
        {"url": "/relative/path", "events": ["*"]},
        {"url": "http://exa\x00mple.com/", "events": ["*"]},
        {"url": "https://example.com/" + "a" * 2100, "events": ["*"]},
        {"url": "http://example.com:99999/", "events": ["*"]},
        [],
    ],
)
async def test_bad_bodies_are_400(client, settings, alice, body):
    await expect_bad_request(await client.post("/api/webhooks", json=body, headers=bearer(alice)))
    assert query(settings, "SELECT id FROM webhooks") == []


async def test_malformed_json_is_400(client, alice):
    response = await client.post("/api/webhooks", data=b"{nope", headers=bearer(alice))
    await expect_bad_request(response)


@pytest.mark.parametrize("params", [{}, {"webhookId": "abc"}, {"webhookId": "0"}, {"webhookId": "9" * 30}])
async def test_bad_webhook_id_is_400(client, alice, params):
    await expect_bad_request(await client.delete("/api/webhooks", params=params, headers=bearer(alice)))


@pytest.mark.parametrize(
    "params", [{"webhookId": "x"}, {"limit": "0"}, {"limit": "101"}, {"cursor": "-1"}, {"cursor": "9" * 19}]
)
async def test_bad_delivery_query_is_400(client, alice, params):
    await expect_bad_request(await client.get("/api/webhooks/deliveries", params=params, headers=bearer(alice)))


async def test_the_number_of_webhooks_is_capped(client, alice):
    for _ in range(20):
        await create_webhook(client, alice, URL)
    response = await client.post("/api/webhooks", json={"url": URL, "events": ["*"]}, headers=bearer(alice))
    data = await expect_error(response, 409)
    assert "at most 20" in data["message"]


async def test_routes_are_in_the_openapi_document(client):
    spec = await (await client.get("/api/openapi.json")).json()
    assert set(spec["paths"]["/api/webhooks"]) == {"get", "post", "delete"}
    post = spec["paths"]["/api/webhooks"]["post"]
    assert "409" in post["responses"] and "201" in post["responses"]
    schema = spec["components"]["schemas"]["WebhookBody"]
    assert "video.deleted" in schema["properties"]["events"]["items"]["enum"]
    assert "secret" in spec["components"]["schemas"]["NewWebhook"]["properties"]
    assert "secret" not in spec["components"]["schemas"]["Webhook"]["properties"]
    assert "/api/webhooks/deliveries" in spec["paths"]


async def test_the_url_is_stored_as_it_will_be_called(client, settings, alice):
    created = await create_webhook(client, alice, "HTTP://LocalHost:9/Hook?x=1")
    assert created["url"] == "http://localhost:9/Hook?x=1"
    assert query(settings, "SELECT url FROM webhooks")[0]["url"] == created["url"]
