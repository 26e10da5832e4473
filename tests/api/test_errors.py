"""Every error is JSON: unknown paths, wrong methods, bad bodies and unexpected failures."""

from __future__ import annotations

import io
import logging

import pytest

import service.analytics.handlers
import service.deletion.handlers
import service.transcription.handlers
import service.uploads.handlers
import service.videos.handlers
from tests.api.common import expect_bad_request, expect_error
from tests.helpers import bearer, query

INTERNAL_ERROR = {"error": "Internal server error", "message": "Failed to process request"}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/nope"),
        ("GET", "/api/video/nope"),
        ("POST", "/api/videos/extra"),
        ("DELETE", "/api/video/delete/x"),
        ("GET", "/nope"),
        ("GET", "/"),
        ("GET", "/api"),
    ],
)
@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "no-token"])
async def test_unknown_path_is_404_json(api, alice, method, path, authenticated):
    headers = bearer(alice) if authenticated else {}
    response = await api.client.request(method, path, headers=headers)
    await expect_error(response, 404, {"error": "Not found"})


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("PATCH", "/api/video", {"GET", "POST"}),
        ("DELETE", "/api/video", {"GET", "POST"}),
        ("GET", "/api/video/delete", {"DELETE"}),
        ("POST", "/api/desktop/video/delete", {"DELETE"}),
        ("POST", "/api/videos", {"GET"}),
        ("GET", "/api/video/upload", {"PUT"}),
        ("PUT", "/api/video/transcribe/status", {"GET"}),
        ("GET", "/api/video/ai/generate", {"POST"}),
        ("POST", "/healthz", {"GET"}),
        ("DELETE", "/api/openapi.json", {"GET"}),
    ],
)
async def test_wrong_method_is_405_json(api, alice, method, path, allowed):
    response = await api.client.request(method, path, headers=bearer(alice))
    await expect_error(response, 405, {"error": "Method not allowed"})
    assert set(response.headers["Allow"].split(",")) == allowed


MALFORMED = {
    "truncated": b"{",
    "missing-value": b'{"name": }',
    "trailing-garbage": b'{"name": "x"} x',
    "single-quotes": b"{'name': 'x'}",
    "not-utf8": b'{"name": "\xff\xfe"}',
    "trailing-comma": b'{"name": "x",}',
}
NOT_AN_OBJECT = {"array": b"[]", "string": b'"x"', "number": b"1", "null": b"null", "true": b"true"}


@pytest.mark.parametrize("body", [*MALFORMED.values(), *NOT_AN_OBJECT.values()], ids=[*MALFORMED, *NOT_AN_OBJECT])
async def test_bad_json_body_is_400(api, alice, body):
    response = await api.client.post(
        "/api/video", data=body, headers={**bearer(alice), "Content-Type": "application/json"}
    )
    await expect_bad_request(response)
    assert query(api.settings, "SELECT count(*) AS n FROM videos")[0]["n"] == 0


async def test_body_over_the_json_limit_is_413_json(api, alice):
    response = await api.client.post("/api/video", data=io.BytesIO(b" " * (2 * 1024 * 1024)), headers=bearer(alice))
    body = await expect_error(response, 413)
    assert body["error"] == "Payload too large"
    assert query(api.settings, "SELECT count(*) AS n FROM videos")[0]["n"] == 0


async def boom(*args, **kwargs):
    raise RuntimeError("secret detail 42")


@pytest.mark.parametrize(
    "module, name, method, path",
    [
        (service.videos.handlers, "get_readable_video", "GET", "/api/video"),
        (service.videos.handlers, "list_owner_videos", "GET", "/api/videos"),
        (service.transcription.handlers, "status_response", "GET", "/api/video/transcribe/status"),
        (service.analytics.handlers, "readable_view_count", "GET", "/api/video/analytics"),
        (service.deletion.handlers, "delete_video", "DELETE", "/api/video/delete"),
        (service.uploads.handlers, "owns_video", "PUT", "/api/video/upload"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_unexpected_failure_is_500_without_details(api, alice, monkeypatch, caplog, module, name, method, path):
    video = await api.create_video(alice)
    monkeypatch.setattr(module, name, boom)
    with caplog.at_level(logging.ERROR):
        response = await api.client.request(method, path, params={"videoId": video["id"]}, headers=bearer(alice))
    text = await response.text()
    await expect_error(response, 500, INTERNAL_ERROR)
    assert "secret detail" not in text and "Traceback" not in text and "RuntimeError" not in text
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert logged, caplog.text
    assert isinstance(logged[0].exc_info[1], RuntimeError) and "secret detail 42" in caplog.text
    assert query(api.settings, "SELECT id FROM videos") == [{"id": video["id"]}]


async def test_error_responses_are_all_json(api, alice, bob):
    video = await api.create_video(alice, public=False)
    cases = [
        ("GET", "/api/video", {"videoId": video["id"]}, {}, 401),
        ("GET", "/api/video", {}, bearer(alice), 400),
        ("GET", "/api/video", {"videoId": video["id"]}, bearer(bob), 404),
        ("POST", "/api/video/transcribe", {"videoId": video["id"]}, bearer(alice), 409),
        ("GET", "/api/zzz", {}, bearer(alice), 404),
        ("PATCH", "/api/videos", {}, bearer(alice), 405),
    ]
    for method, path, params, headers, status in cases:
        response = await api.client.request(method, path, params=params, headers=headers)
        assert response.status == status, (method, path)
        assert response.headers["Content-Type"].split(";")[0] == "application/json", (method, path)
