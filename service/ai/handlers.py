"""Regenerate a video's AI title, summary and chapters."""

from __future__ import annotations

from aiohttp import web

from service.ai.queries import start_ai_run
from service.api import Api, json_response, parse_query
from service.auth.caller import require_user
from service.db import transaction
from service.errors import conflict, video_not_found
from service.keys import PG_POOL, SETTINGS
from service.models import AiGenerationOut, VideoIdQuery
from service.videos.queries import lock_owned_video

api = Api()


@api.route(
    "POST",
    "/api/video/ai/generate",
    query=VideoIdQuery,
    response=AiGenerationOut,
    status=202,
    errors=(400, 401, 404, 409),
    tag="ai",
    description="Queues a new generation from ERROR, SKIPPED or COMPLETE; leaves QUEUED or PROCESSING "
    "alone. 409 while the transcript is not COMPLETE or when AI generation is disabled.",
)
async def regenerate_ai(request: web.Request) -> web.StreamResponse:
    """Generate the AI title, summary and chapters again (owner only)."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    async with transaction(request.app[PG_POOL]) as tx:
        video = await lock_owned_video(tx, query.video_id, user.id)
        if video is None:
            raise video_not_found()
        if video["transcription_status"] != "COMPLETE":
            raise conflict("The transcript is not COMPLETE yet")
        if not request.app[SETTINGS].ai_enabled:
            raise conflict("AI generation is disabled on this server")
        status = video["ai_status"]
        if status not in ("QUEUED", "PROCESSING"):
            status = await start_ai_run(tx, video["id"], video["owner_id"], None)
    return json_response(AiGenerationOut(ai_generation_status=status), status=202)
