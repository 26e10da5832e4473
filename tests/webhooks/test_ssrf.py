"""Webhook URLs cannot aim the service at its own network: refused when created, and again when sent."""

from __future__ import annotations

import socket
from ipaddress import ip_address
from typing import Any

import pytest

from service.webhooks.urls import GuardedResolver, RefusedUrl, refusal
from tests.api.common import expect_bad_request
from tests.helpers import bearer, drain, query, write
from tests.webhooks.conftest import delete_new_video, deliveries


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhook_allow_private_urls": False,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_window_seconds": 0.3,
        "transcription_engine": "deepgram",
        "deepgram_api_key": "k",
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:8000/api/videos",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[::1]/hook",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a00:1]/",
        "http://localhost/hook",
        "http://localhost:8000/hook",
        "http://127.1/",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://user:password@example.com/hook",
    ],
)
async def test_ssrf_shaped_urls_are_refused(client, settings, alice, url):
    response = await client.post("/api/webhooks", json={"url": url, "events": ["*"]}, headers=bearer(alice))
    message = await expect_bad_request(response)
    assert message.startswith("url")
    assert query(settings, "SELECT id FROM webhooks") == []


async def test_a_public_address_is_accepted(client, alice):
    response = await client.post(
        "/api/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["*"]}, headers=bearer(alice)
    )
    assert response.status == 201, await response.text()


async def test_the_refusal_says_why(client, alice):
    response = await client.post(
        "/api/webhooks", json={"url": "http://169.254.169.254/", "events": ["*"]}, headers=bearer(alice)
    )
    message = await expect_bad_request(response)
    assert "169.254.169.254 is a link-local address" in message and "WEBHOOK_ALLOW_PRIVATE_URLS" in message


async def test_an_address_that_became_private_is_refused_at_delivery(api, settings, alice, receiver):
    # Created while allowed (or while its name resolved elsewhere); now it reaches loopback.
    owner = query(settings, "SELECT id FROM users WHERE email = 'alice@example.com'")[0]["id"]
    named = receiver.url.replace("127.0.0.1", "localhost")
    for url in [receiver.url, named]:
        await write(
            settings,
            "INSERT INTO webhooks (owner_id, url, events, secret) VALUES (%s, %s, '{*}', 'whsec_x') RETURNING id",
            (owner, url),
        )
    await delete_new_video(api, alice)
    await drain(settings, rounds=20)

    assert receiver.requests == []
    rows = deliveries(settings)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    for row in rows:
        assert row["last_status_code"] is None
        assert "is a loopback address" in row["last_error"], row["last_error"]


@pytest.mark.parametrize(
    "address, refused",
    [
        ("93.184.215.14", False),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", False),
        ("::ffff:93.184.215.14", False),
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("198.18.0.1", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("ff02::1", True),
        ("::ffff:10.0.0.1", True),
        ("64:ff9b::7f00:1", True),
        ("2002:a00:1::", True),
    ],
)
def test_address_classification(address, refused):
    assert (refusal(ip_address(address)) is not None) is refused


async def test_the_resolver_refuses_names_of_private_addresses():
    with pytest.raises(RefusedUrl, match="loopback"):
        await GuardedResolver(allow_private=False).resolve("localhost", 80, socket.AF_UNSPEC)
    assert await GuardedResolver(allow_private=True).resolve("localhost", 80, socket.AF_INET)
