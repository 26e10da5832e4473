"""Shared pieces of the API contract tests: the route table, requests and error checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from config import Settings
from tests.helpers import query

UNAUTHORIZED = {"error": "Unauthorized"}
VIDEO_NOT_FOUND = {"error": "Video not found"}
UNKNOWN_ID = "zzzzzzzzzzzzzzz"  # well formed (15 chars of [0-9a-z]), never generated in these tests


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    takes_video_id: bool
    access: str  # "read": owner or anyone on a public video; "owner": owner only; "own": the caller's own data;
    # "admin": admin tokens only
    ok: int
    anonymous: bool = False  # no token needed on a public video (a token that is sent must still be valid)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("POST", "/api/video", False, "own", 201),
    Route("GET", "/api/video", True, "read", 200),
    Route("GET", "/api/videos", False, "own", 200),
    Route("PUT", "/api/video/upload", True, "owner", 200),
    Route("GET", "/api/video/transcribe/status", True, "read", 200),
    Route("GET", "/api/video/events", True, "read", 200),  # an event stream: tests/events reads it
    Route("POST", "/api/video/transcribe", True, "owner", 202),
    Route("GET", "/api/video/transcription", True, "owner", 200),
    Route("GET", "/api/video/transcript", True, "read", 200),
    Route("POST", "/api/video/ai/generate", True, "owner", 202),
    Route("DELETE", "/api/video/delete", True, "owner", 200),
    Route("DELETE", "/api/desktop/video/delete", True, "owner", 200),
    Route("GET", "/api/video/analytics", True, "read", 200),
    Route("GET", "/api/video/analytics/daily", True, "read", 200),
    Route("POST", "/api/video/view", True, "read", 204, anonymous=True),
    Route("POST", "/api/video/comment", True, "read", 201),
    Route("GET", "/api/video/comments", True, "read", 200),
    Route("DELETE", "/api/video/comment", False, "own", 204),
    Route("POST", "/api/webhooks", False, "own", 201),
    Route("GET", "/api/webhooks", False, "own", 200),
    Route("DELETE", "/api/webhooks", False, "own", 204),
    Route("GET", "/api/webhooks/deliveries", False, "own", 200),
    # Admin tokens only; any other valid token gets 404 (tests/ops checks who gets what).
    Route("GET", "/api/ops/queue", False, "admin", 200),
    Route("GET", "/api/ops/jobs", False, "admin", 200),
    Route("POST", "/api/ops/retry", False, "admin", 200),
    Route("POST", "/api/ops/requeue-stuck", False, "admin", 200),
]
VIDEO_ROUTES = [r for r in ROUTES if r.takes_video_id]
OWNER_ROUTES = [r for r in ROUTES if r.access == "owner"]
READ_ROUTES = [r for r in ROUTES if r.access == "read"]
PUBLIC_ROUTES = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/openapi.json"), ("GET", "/api/docs"), ("GET", "/metrics"),
    ("GET", "/ops"),
}
DELETE_ROUTES = ["/api/video/delete", "/api/desktop/video/delete"]


def route_id(route: Route) -> str:
    return str(route)


async def call(
    client: TestClient,
    route: Route,
    video_id: str | None = None,
    headers: dict[str, str] | None = None,
    params: Any = None,
    url: str | None = None,
) -> ClientResponse:
    """Send a request to `route`, with a body when the route takes one."""
    if params is None:
        params = {"videoId": video_id} if video_id is not None and route.takes_video_id else {}
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if url is None:
        kwargs["params"] = params
    if route.path == "/api/video/upload":
        kwargs["data"] = b"new media bytes"
    elif route.method == "POST" and route.path == "/api/video":
        kwargs["json"] = {"name": "created"}
    elif route.method == "POST" and route.path == "/api/video/comment":
        kwargs["json"] = {"type": "text", "content": "a comment"}
    return await client.request(route.method, url or route.path, **kwargs)


async def expect_error(response: ClientResponse, status: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The response is a JSON error with this status (and exactly this body when given)."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/json", response.headers
    data = await response.json()
    assert isinstance(data, dict) and isinstance(data.get("error"), str), data
    if body is not None:
        assert data == body
    return data  # type: ignore[no-any-return]


async def expect_bad_request(response: ClientResponse) -> str:
    data = await expect_error(response, 400)
    assert set(data) == {"error", "message"} and data["error"] == "Bad request", data
    assert isinstance(data["message"], str) and data["message"].strip(), data
    return data["message"]  # type: ignore[no-any-return]


def add_comments(settings: Settings, video_id: str, author_email: str, text: int = 2, emoji: int = 3) -> None:
    user = query(settings, "SELECT id FROM users WHERE email = %s", (author_email,))[0]["id"]
    for i in range(text):
        query(
            settings,
            "INSERT INTO comments (video_id, author_id, type, content) VALUES (%s, %s, 'text', %s) RETURNING id",
            (video_id, user, f"comment {i}"),
        )
    for _ in range(emoji):
        query(
            settings,
            "INSERT INTO comments (video_id, author_id, type, content) VALUES (%s, %s, 'emoji', %s) RETURNING id",
            (video_id, user, "\N{THUMBS UP SIGN}"),
        )


def storage_files(settings: Settings) -> dict[str, bytes]:
    """Every file in local storage, by key, with its bytes."""
    root = Path(settings.storage_dir)
    if not root.exists():
        return {}
    found = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def storage_entries(settings: Settings) -> list[str]:
    """Every file and folder in local storage."""
    root = Path(settings.storage_dir)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def video_row(settings: Settings, video_id: str) -> dict[str, Any] | None:
    rows = query(settings, "SELECT * FROM videos WHERE id = %s", (video_id,))
    return rows[0] if rows else None


def user_id(settings: Settings, email: str) -> int:
    return int(query(settings, "SELECT id FROM users WHERE email = %s", (email,))[0]["id"])
