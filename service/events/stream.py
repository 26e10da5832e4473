"""GET /api/video/events: a video's state, then each change as it happens (server-sent events).

Without Last-Event-ID the stream opens with `event: state` (id: the video's newest event id);
with it, every event of the video after that id, in order. Then live events, in order and
without duplicates: the stream subscribes to the hub *before* it reads the database, and drops
live events whose id it already sent. `progress` events carry no id (they are not transitions).
The stream ends after `deleted`, when the caller loses read access, when the hub had to drop
it (too far behind: the client resumes), or when the server stops.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import aiopg
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from service.api import Api, parse_query
from service.auth.caller import User, require_user
from service.db import CONNECTION_ERRORS
from service.errors import ApiError, bad_request, video_not_found
from service.events.hub import HUB
from service.events.log import events_after, owner_tombstone, stream_head
from service.events.models import MAX_EVENT_ID, EventsQuery
from service.events.subscribers import Item, Progress, Subscriber, Transition
from service.keys import PG_POOL
from service.metrics import EVENT_STREAMS_OPEN
from service.statuscache.status import video_entry

log = logging.getLogger("capvid.events")
api = Api()
LAST_EVENT_ID = "Last-Event-ID"
HEARTBEAT = b": heartbeat\n\n"
# aiohttp-sse pings on a timer per stream with ": ping"; the hub's one tick sends our `: heartbeat`.
NO_LIBRARY_PING = 10.0**7


@dataclass
class Cursor:
    """Frames not sent yet, the newest event id sent (or about to be), and whether `deleted` was reached."""

    frames: list[bytes] = field(default_factory=list)
    last_id: int = 0
    ended: bool = False


@api.route(
    "GET",
    "/api/video/events",
    query=EventsQuery,
    response_media_type="text/event-stream",
    errors=(400, 401, 404),
    tag="events",
    description="Server-sent events: `state` first (or, after `Last-Event-ID: n`, every event after n), then "
    "`transcription`, `ai` and `deleted` (each with `id:` = its event id) and `progress` (no id) as they "
    "happen, and a `: heartbeat` comment every EVENT_HEARTBEAT_SECONDS. The stream ends after `deleted`.",
)
async def video_events(request: web.Request) -> web.StreamResponse:
    """The video's state, then each change as it happens (text/event-stream)."""
    user = await require_user(request)
    query = parse_query(request, EventsQuery)
    resume = _resume_after(request, query)
    # Also puts the video in the cache, where the stream's later access checks find it.
    entry = await video_entry(request, query.video_id)
    if (entry is None and resume is None) or (entry is not None and not entry.readable_by(user.id)):
        raise video_not_found()
    pool = request.app[PG_POOL]
    with request.app[HUB].subscribe(query.video_id, events=True) as subscriber, EVENT_STREAMS_OPEN.track_inprogress():
        opening = await _opening(pool, query.video_id, user, resume)
        subscriber.drop_progress()  # only progress that arrives after the state was read is news
        response = EventSourceResponse(sep="\n")
        response.ping_interval = NO_LIBRARY_PING
        await response.prepare(request)
        async with response:
            try:
                await _serve(request, response, subscriber, opening)
            except ConnectionResetError:
                pass  # the client went away
            except CONNECTION_ERRORS as exc:
                # The database went away mid-stream: end it; the client resumes from its last id.
                log.warning("event stream of %s ended: %s", query.video_id, exc)
        return response


def _resume_after(request: web.Request, query: EventsQuery) -> int | None:
    header = request.headers.get(LAST_EVENT_ID, "").strip()
    if not header:
        return query.last_event_id
    if not header.isascii() or not header.isdigit() or int(header) > MAX_EVENT_ID:
        raise bad_request(f"{LAST_EVENT_ID}: must be an event id (a non-negative integer)")
    return int(header)


async def _opening(pool: aiopg.Pool, video_id: str, user: User, resume: int | None) -> Cursor:
    head = await stream_head(pool, video_id, user.id)
    if head is None:
        # Gone: its owner may still be owed the `deleted` event the dropped stream did not deliver.
        tombstone = await owner_tombstone(pool, video_id, user.id, resume) if resume is not None else None
        if tombstone is None:
            raise video_not_found()
        opening = Cursor(last_id=resume or 0)
        _add(opening, Transition.from_row(tombstone))
        return opening
    if resume is None:
        state = {
            "videoId": video_id,
            "transcriptionStatus": head["transcription_status"],
            "transcriptionProgress": head["transcription_progress"],
            "aiGenerationStatus": head["ai_status"],
        }
        last_id = head["last_event_id"]
        return Cursor(frames=[_frame("state", str(last_id), state)], last_id=last_id)
    opening = Cursor(last_id=resume)
    for row in await events_after(pool, video_id, resume):
        _add(opening, Transition.from_row(row))
    return opening


def _add(cursor: Cursor, event: Transition) -> None:
    """Queue a transition unless it was sent already (ids of one video grow in commit order)."""
    if cursor.ended or event.id <= cursor.last_id:
        return
    if event.frame is None:
        event.frame = _frame(event.kind, str(event.id), _transition_data(event))
    cursor.frames.append(event.frame)
    cursor.last_id = event.id
    cursor.ended = event.kind == "deleted"


def _frame(event: str, event_id: str | None, data: dict[str, Any]) -> bytes:
    # Compact JSON has no line breaks, so the data is one `data:` line.
    head = f"id: {event_id}\nevent: {event}\n" if event_id is not None else f"event: {event}\n"
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _transition_data(event: Transition) -> dict[str, Any]:
    if event.kind == "deleted":
        return {"videoId": event.video_id, "eventId": event.id}
    status_key = "transcriptionStatus" if event.kind == "transcription" else "aiGenerationStatus"
    return {
        "videoId": event.video_id,
        "eventId": event.id,
        status_key: event.status,
        "run": event.run,
        "attempt": event.attempt,
        "detail": event.detail,
    }


def _progress_frame(item: Progress) -> bytes:
    if item.frame is None:
        data = {"videoId": item.video_id, "kind": item.kind, "progress": item.progress, "step": item.step}
        item.frame = _frame("progress", None, data)
    return item.frame


async def _serve(request: web.Request, response: EventSourceResponse, subscriber: Subscriber, opening: Cursor) -> None:
    pool = request.app[PG_POOL]
    for frame in opening.frames:
        await response.write(frame)
    if opening.ended:
        return
    stream = Cursor(last_id=opening.last_id)
    while True:
        await subscriber.wait()
        if subscriber.closing or subscriber.dropped:
            return
        gone = False
        if subscriber.recheck:
            subscriber.recheck = False
            access = await _access(request, subscriber.video_id)
            if access == "denied":
                return
            # Deleted: its `deleted` event committed with the delete, so it is in the log already.
            gone = access == "gone"
            subscriber.resync |= gone
        items: list[Item] = subscriber.take()
        if subscriber.resync:
            # The listener reconnected (or the video is gone): what was missed is in the log.
            subscriber.resync = False
            items += [Transition.from_row(row) for row in await events_after(pool, subscriber.video_id, stream.last_id)]
        for item in items:
            if isinstance(item, Progress):
                await response.write(_progress_frame(item))
                continue
            _add(stream, item)
            for frame in stream.frames:
                await response.write(frame)
            stream.frames.clear()
            if stream.ended:
                return
        if gone:
            return
        if subscriber.beat:
            subscriber.beat = False
            await response.write(HEARTBEAT)


async def _access(request: web.Request, video_id: str) -> Literal["readable", "gone", "denied"]:
    """Whether the caller may still read the video: a revoked token or a video made private ends the stream."""
    request.app[HUB].forget_sync(request)
    try:
        user = await require_user(request)
    except ApiError:
        return "denied"
    entry = await video_entry(request, video_id)
    if entry is None:
        return "gone"
    return "readable" if entry.readable_by(user.id) else "denied"
