"""Cap's status poll answered from memory: ETag, If-None-Match → 304, and `?wait=N` long-polls.

The body is one of four constants, so each has its ETag computed once; the same in every
process (a client behind a load balancer may poll any of them). A cached poll makes no database
or Redis call.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from aiohttp import web

from service.auth.caller import User, require_user
from service.errors import video_not_found
from service.events.hub import HUB, Hub
from service.keys import PG_POOL
from service.metrics import EVENT_STREAMS_OPEN
from service.models import TranscriptionStatusOut
from service.statuscache import VideoEntry
from service.statuscache.queries import video_access

# While the listener is down no notification wakes a long-poll: it re-reads this often instead.
UNLISTENED_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Answer:
    body: bytes
    etag: str

    def response(self) -> web.Response:
        return web.Response(body=self.body, content_type="application/json", headers={"ETag": self.etag})

    def not_modified(self) -> web.Response:
        return web.Response(status=304, headers={"ETag": self.etag})


def _answer(status: str | None) -> Answer:
    model = TranscriptionStatusOut.model_validate({"transcriptionStatus": status})
    body = model.model_dump_json(by_alias=True).encode()
    return Answer(body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


ANSWERS: dict[str | None, Answer] = {status: _answer(status) for status in (None, "PROCESSING", "COMPLETE", "ERROR")}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


async def video_entry(request: web.Request, video_id: str) -> VideoEntry | None:
    """Owner, visibility and status of the video: from memory while the hub listens, else from the database."""
    app = request.app
    hub = app.get(HUB)
    cache = await hub.synced_cache(request) if hub is not None else None
    if cache is None:
        return await _load_video(app, video_id)
    entry = cache.videos.get(video_id)
    if entry is not None:
        return entry
    return await cache.videos.load(video_id, lambda: _load_video(app, video_id))


async def _load_video(app: web.Application, video_id: str) -> VideoEntry | None:
    row = await video_access(app[PG_POOL], video_id)
    if row is None:
        return None
    return VideoEntry(row["owner_id"], row["public"], row["transcription_status"])


async def readable_answer(request: web.Request, user: User, video_id: str) -> Answer:
    entry = await video_entry(request, video_id)
    if entry is None or not entry.readable_by(user.id):
        raise video_not_found()
    return ANSWERS[entry.transcription_status]


async def status_response(request: web.Request, user: User, video_id: str, wait: float | None) -> web.StreamResponse:
    answer = await readable_answer(request, user, video_id)
    if not etag_matches(request.headers.get("If-None-Match"), answer.etag):
        return answer.response()
    if wait is None:
        return answer.not_modified()
    return await _long_poll(request, video_id, answer, wait)


async def _long_poll(request: web.Request, video_id: str, seen: Answer, wait: float) -> web.StreamResponse:
    """Hold the poll until the answer changes (200), access is lost (401/404) or `wait` passes (304)."""
    hub: Hub = request.app[HUB]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with hub.subscribe(video_id, events=False) as subscriber, EVENT_STREAMS_OPEN.track_inprogress():
        while True:
            # Checked again once subscribed: a change between the first check and now is seen here.
            hub.forget_sync(request)
            user = await require_user(request)
            answer = await readable_answer(request, user, video_id)
            if answer.etag != seen.etag:
                return answer.response()
            remaining = deadline - loop.time()
            if remaining <= 0 or subscriber.closing:
                return answer.not_modified()
            await subscriber.wait(remaining if hub.connected else min(remaining, UNLISTENED_RECHECK_SECONDS))
