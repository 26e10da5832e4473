"""Fuzzing every operation of /api/openapi.json with schemathesis, as a client holding a valid token.

Whatever is sent (valid inputs and deliberately invalid ones), the live server never answers
5xx, answers only documented status codes and content types, every body matches its schema,
and invalid input is refused with a 4xx. Examples are bounded (FUZZ_EXAMPLES per operation
and kind, 25 by default) and derandomized: CI sends the same requests every time.

The caller is an admin (so ops routes are exercised past their 404) who owns a transcribed
video and one without media; another user's public video and comments of both are known too.
Their ids are mixed into generated `videoId` / `commentId` values, so more than 404s are seen.
Operations that change what the others read run after them: uploads and forced
transcriptions, then deletes.
Streaming operations (`text/event-stream`) never end by themselves and are left out; a
long-poll parameter is bounded to one second (tests/fuzz/runner.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from aiohttp import ClientSession
from pydantic import SecretStr

from config import Settings
from service.app import create_app
from tests.fakes.deepgram import FakeDeepgram
from tests.fuzz.runner import Report, Target, fuzz
from tests.helpers import Api, bearer, drain, make_user, record_figure
from tests.pipeline.conftest import uploaded

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


def _changes_video_state(name: str) -> bool:
    return name in ("PUT /api/video/upload", "POST /api/video/transcribe")


DESKTOP_DELETE = "DELETE /api/desktop/video/delete"
VIDEO_DELETE = "DELETE /api/video/delete"
# Uploads and forced transcriptions send the known videos back to PROCESSING (no worker runs
# here), and deletes remove them: each runs after the operations that read what they change.
PHASES = [
    lambda name: not _changes_video_state(name) and name not in (DESKTOP_DELETE, VIDEO_DELETE),
    _changes_video_state,
    lambda name: name == DESKTOP_DELETE,  # on videos of its own
    lambda name: name == VIDEO_DELETE,
]


@pytest.fixture
def settings_overrides(deepgram: FakeDeepgram) -> dict[str, Any]:
    # The fixture data needs one finished transcript: a local fake engine makes it in milliseconds.
    return {
        "transcription_engine": "deepgram",
        "deepgram_api_key": SecretStr(deepgram.api_key),
        "deepgram_base_url": deepgram.url,  # type: ignore[attr-defined]
    }


async def test_no_operation_answers_5xx_or_outside_its_documented_contract(
    aiohttp_server: Any, api: Api, settings: Settings, bob: str, request: pytest.FixtureRequest
):
    token = await make_user(settings, "fuzzer@example.com", admin=True)
    known = await known_ids(api, token, bob)
    server = await aiohttp_server(create_app(settings))
    base_url = str(server.make_url("")).rstrip("/")
    async with ClientSession() as session, session.get(f"{base_url}/api/openapi.json") as response:
        assert response.status == 200
        spec = await response.json()

    started = time.monotonic()
    spares = [(await api.create_video(token))["id"] for _ in range(2)]

    def ids_for(operation: str) -> dict[str, list[str]]:
        return {**known, "videoId": spares} if operation == DESKTOP_DELETE else known

    target = Target(spec, base_url, bearer(token), ids_for, MAX_EXAMPLES)
    report = await asyncio.to_thread(fuzz, target, PHASES)  # this loop keeps serving meanwhile
    record_figure(request, summary(report, time.monotonic() - started))

    assert report.operations == sum(len(methods) for methods in spec["paths"].values()) - len(report.skipped)
    assert not report.failures, "\n\n".join(report.failures)


async def known_ids(api: Api, token: str, other: str) -> dict[str, list[str]]:
    """A transcribed video of the caller, one without media, another user's public video, and
    comments of both users."""
    transcribed = await uploaded(api, token, name="fuzzed")
    await drain(api.settings)
    fresh = (await api.create_video(token))["id"]
    public = (await api.create_video(other, public=True))["id"]
    comments = []
    for author, video_id in ((token, transcribed), (other, public), (token, public)):
        response = await api.client.post(
            "/api/video/comment", params={"videoId": video_id}, json={"type": "text", "content": "hi"},
            headers=bearer(author),
        )
        assert response.status == 201, await response.text()
        comments.append(str((await response.json())["id"]))
    return {"videoId": [transcribed, fresh, public], "commentId": comments}


def summary(report: Report, seconds: float) -> str:
    by_class = {f"{c}xx": sum(n for code, n in report.statuses.items() if code // 100 == c) for c in (2, 4, 5)}
    text = (
        f"{report.operations} operations, {report.requests} requests in {seconds:.0f} s "
        f"({', '.join(f'{k} {v}' for k, v in by_class.items())}): {len(report.failures)} failures"
    )
    if report.skipped:
        text += f"; not fuzzed (streaming): {', '.join(report.skipped)}"
    if report.never_2xx:
        text += f"; never 2xx: {', '.join(report.never_2xx)}"
    return text
