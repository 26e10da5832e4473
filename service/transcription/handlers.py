"""Transcription routes: Cap's status poll, starting a run, the transcript and its detail."""

from __future__ import annotations

from aiohttp import web

from service.api import Api, json_response, parse_query
from service.auth.caller import require_user
from service.db import connection, transaction
from service.errors import conflict, not_found, video_not_found
from service.keys import PG_POOL, SETTINGS, STORAGES
from service.models import StatusQuery, TranscribeQuery, TranscriptionDetail, TranscriptionStatusOut, VideoIdQuery
from service.statuscache.status import status_response
from service.storage import transcript_key
from service.transcription.queries import request_transcription, transcript_location
from service.videos.queries import lock_owned_video

api = Api()


@api.route(
    "GET",
    "/api/video/transcribe/status",
    query=StatusQuery,
    response=TranscriptionStatusOut,
    errors=(400, 401, 404),
    tag="transcription",
    description="Answers with an `ETag`; `If-None-Match` with the current one answers 304 with no body. "
    "With `wait=N` as well (0 < N <= 30) the request is held until the status changes (200) or N seconds "
    "pass (304): a long-poll for clients that cannot keep an event stream (GET /api/video/events).",
)
async def transcription_status(request: web.Request) -> web.StreamResponse:
    """The video's transcription status (Cap's desktop app polls this)."""
    user = await require_user(request)
    query = parse_query(request, StatusQuery)
    return await status_response(request, user, query.video_id, query.wait)


@api.route(
    "POST",
    "/api/video/transcribe",
    query=TranscribeQuery,
    response=TranscriptionStatusOut,
    status=202,
    errors=(400, 401, 404, 409),
    tag="transcription",
    description="Starts transcription when it never ran, retries it after ERROR, changes nothing while "
    "PROCESSING or COMPLETE (unless force=true re-transcribes a COMPLETE video).",
)
async def start_transcription(request: web.Request) -> web.StreamResponse:
    """Request transcription of an uploaded video (owner only)."""
    user = await require_user(request)
    query = parse_query(request, TranscribeQuery)
    async with transaction(request.app[PG_POOL]) as tx:
        video = await lock_owned_video(tx, query.video_id, user.id)
        if video is None:
            raise video_not_found()
        if video["media_key"] is None:
            raise conflict("The video has no uploaded media to transcribe")
        status = await request_transcription(tx, video, query.force)
    return json_response(TranscriptionStatusOut(transcription_status=status), status=202)


@api.route(
    "GET",
    "/api/video/transcription",
    query=VideoIdQuery,
    response=TranscriptionDetail,
    errors=(400, 401, 404),
    tag="transcription",
)
async def transcription_detail(request: web.Request) -> web.StreamResponse:
    """Attempts, the last error and the engine of the video's transcription (owner only)."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    async with connection(request.app[PG_POOL]) as tx:
        row = await tx.fetchone(
            """
            SELECT transcription_status, transcription_attempt, transcription_error, transcription_note,
                   transcription_engine, transcription_progress, transcription_started_at,
                   transcription_finished_at
            FROM videos WHERE id = %s AND owner_id = %s
            """,
            (query.video_id, user.id),
        )
    if row is None:
        raise video_not_found()
    return json_response(
        TranscriptionDetail(
            status=row["transcription_status"],
            attempt=row["transcription_attempt"],
            max_attempts=request.app[SETTINGS].transcription_max_attempts,
            error=row["transcription_error"],
            note=row["transcription_note"],
            engine=row["transcription_engine"],
            progress=row["transcription_progress"],
            started_at=row["transcription_started_at"],
            finished_at=row["transcription_finished_at"],
        )
    )


@api.route(
    "GET",
    "/api/video/transcript",
    query=VideoIdQuery,
    response_media_type="text/vtt",
    errors=(400, 401, 404),
    tag="transcription",
)
async def transcript(request: web.Request) -> web.StreamResponse:
    """The WebVTT transcript (404 until transcription is COMPLETE)."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    async with connection(request.app[PG_POOL]) as tx:
        row = await transcript_location(tx, query.video_id, user.id)
    if row is None:
        raise video_not_found()
    if row["transcription_status"] != "COMPLETE":
        raise not_found("Transcript not found")
    document = await request.app[STORAGES].get(row["source"]).get_bytes(transcript_key(row["owner_id"], query.video_id))
    if document is None:
        raise not_found("Transcript not found")
    return web.Response(body=document, content_type="text/vtt", charset="utf-8")
