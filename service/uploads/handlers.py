"""Upload a video's media: streamed to storage, then recorded, then transcription requested."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service.api import Api, json_response, parse_query
from service.auth.caller import require_user
from service.db import transaction
from service.errors import too_large, video_not_found
from service.keys import PG_POOL, SETTINGS, STORAGES
from service.models import Video, VideoIdQuery
from service.storage import TooLarge, media_key
from service.transcription.queries import start_transcription_run
from service.videos.queries import lock_owned_video, owns_video, readable_video
from service.videos.view import video_from_row

api = Api()
CHUNK = 1024 * 1024


@api.route(
    "PUT",
    "/api/video/upload",
    query=VideoIdQuery,
    body_media_type="video/mp4",
    response=Video,
    errors=(400, 401, 404, 413),
    tag="videos",
    description="Streams the body to storage as `{ownerId}/{videoId}/result.mp4` (never held in memory), "
    "records it and requests transcription. Bodies over MAX_UPLOAD_BYTES answer 413.",
)
async def upload_media(request: web.Request) -> web.StreamResponse:
    """Upload the video's media file."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    app = request.app
    pool, storage, limit = app[PG_POOL], app[STORAGES].default, app[SETTINGS].max_upload_bytes
    if not await owns_video(pool, query.video_id, user.id):
        raise video_not_found()
    if request.content_length is not None and request.content_length > limit:
        raise too_large(f"The upload is larger than {limit} bytes")
    key = media_key(user.id, query.video_id)
    try:
        size = await storage.write_stream(key, _body_chunks(request), max_bytes=limit)
    except TooLarge:
        raise too_large(f"The upload is larger than {limit} bytes") from None
    async with transaction(pool) as tx:
        video = await lock_owned_video(tx, query.video_id, user.id)
        if video is not None:
            await tx.execute(
                "UPDATE videos SET media_key = %s, media_bytes = %s, source = %s, updated_at = now() WHERE id = %s",
                (key, size, storage.backend, video["id"]),
            )
            await start_transcription_run(tx, video)
            row = await readable_video(tx, video["id"], user.id)
    if video is None:
        # Deleted while uploading: what we wrote may have landed after its cleanup ran.
        await storage.delete_keys([key])
        raise video_not_found()
    assert row is not None
    return json_response(video_from_row(row))


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
