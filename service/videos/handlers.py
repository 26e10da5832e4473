"""Create, read and list videos."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

from aiohttp import web

from service.api import Api, json_response, parse_json_body, parse_query
from service.auth.caller import require_user
from service.db import transaction
from service.errors import bad_request, video_not_found
from service.keys import PG_POOL, SETTINGS
from service.models import CreateVideoBody, ListVideosQuery, Video, VideoIdQuery, VideoPage
from service.videos.queries import get_readable_video, insert_video, list_owner_videos, readable_video
from service.videos.view import video_from_row

api = Api()
VIDEO_ID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@api.route("POST", "/api/video", body=CreateVideoBody, response=Video, status=201, errors=(400, 401), tag="videos")
async def create_video(request: web.Request) -> web.StreamResponse:
    """Create a video (no media yet: upload it next)."""
    user = await require_user(request)
    body = await parse_json_body(request, CreateVideoBody, optional=True)
    metadata = body.metadata.model_dump(mode="json", exclude_none=True) if body.metadata else {}
    source = request.app[SETTINGS].storage_backend
    async with transaction(request.app[PG_POOL]) as tx:
        video_id = await insert_video(tx, user.id, body.name, body.public, metadata, source)
        row = await readable_video(tx, video_id, user.id)
    assert row is not None
    return json_response(video_from_row(row), status=201)


@api.route("GET", "/api/video", query=VideoIdQuery, response=Video, errors=(400, 401, 404), tag="videos")
async def get_video(request: web.Request) -> web.StreamResponse:
    """The Video object."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    row = await get_readable_video(request.app[PG_POOL], query.video_id, user.id)
    if row is None:
        raise video_not_found()
    return json_response(video_from_row(row))


@api.route("GET", "/api/videos", query=ListVideosQuery, response=VideoPage, errors=(400, 401), tag="videos")
async def list_videos(request: web.Request) -> web.StreamResponse:
    """The caller's videos, newest first, a page at a time."""
    user = await require_user(request)
    query = parse_query(request, ListVideosQuery)
    after = decode_cursor(query.cursor) if query.cursor else None
    rows = await list_owner_videos(
        request.app[PG_POOL], user.id, query.limit + 1, after, query.transcription_status
    )
    page, more = rows[: query.limit], len(rows) > query.limit
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None
    return json_response(VideoPage(videos=[video_from_row(r) for r in page], next_cursor=next_cursor))


def encode_cursor(created_at: datetime, video_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{video_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, video_id = raw.split("|", 1)
        if not VIDEO_ID_SHAPE.match(video_id):
            raise ValueError(video_id)
        return datetime.fromisoformat(created), video_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("cursor: not a cursor this API returned") from None
