"""Delete a video: Cap's web route and its desktop twin."""

from __future__ import annotations

from aiohttp import web

from service.api import Api, parse_query
from service.auth.caller import require_user
from service.db import transaction
from service.deletion.queries import delete_video
from service.errors import video_not_found
from service.keys import PG_POOL
from service.models import VideoIdQuery

api = Api()

DESCRIPTION = (
    "Permanently deletes the video and every row that belongs to it, in one transaction; its stored "
    "objects are removed by a cleanup job that cannot be lost. Answers 200 with an empty body."
)


async def _delete(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    async with transaction(request.app[PG_POOL]) as tx:
        deleted = await delete_video(tx, query.video_id, user.id)
    if not deleted:
        raise video_not_found()
    # An empty 200 without a JSON content type: ts-rest clients parse JSON-typed bodies.
    return web.Response(status=200)


@api.route(
    "DELETE", "/api/video/delete", query=VideoIdQuery, errors=(400, 401, 404), tag="videos", description=DESCRIPTION
)
async def delete_video_route(request: web.Request) -> web.StreamResponse:
    """Delete a video with everything attached to it (owner only)."""
    return await _delete(request)


@api.route(
    "DELETE",
    "/api/desktop/video/delete",
    query=VideoIdQuery,
    errors=(400, 401, 404),
    tag="videos",
    description=DESCRIPTION,
)
async def desktop_delete_video(request: web.Request) -> web.StreamResponse:
    """Delete a video, for Cap's desktop app (owner only)."""
    return await _delete(request)
