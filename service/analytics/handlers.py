"""Cap's analytics route: the video's view count."""

from __future__ import annotations

from aiohttp import web

from service.api import Api, json_response, parse_query
from service.auth.caller import require_user
from service.errors import video_not_found
from service.keys import PG_POOL
from service.models import AnalyticsOut, VideoIdQuery
from service.videos.queries import readable_transcription_status

api = Api()


@api.route("GET", "/api/video/analytics", query=VideoIdQuery, response=AnalyticsOut, errors=(400, 401, 404), tag="analytics")
async def video_analytics(request: web.Request) -> web.StreamResponse:
    """The number of views of the video."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    found, _ = await readable_transcription_status(request.app[PG_POOL], query.video_id, user.id)
    if not found:
        raise video_not_found()
    # No view is recorded yet (view recording is a later feature), so the honest count is 0.
    return json_response(AnalyticsOut(count=0))
