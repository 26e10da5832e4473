"""Views: record one (anonymous on a public video), read the count, a range, or a daily series."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from service.analytics.queries import readable_daily_views, readable_view_count, record_view, utc_day
from service.analytics.viewers import VIEWS, client_ip, viewer_key
from service.api import Api, json_response, parse_json_body, parse_query
from service.auth.caller import User, require_user
from service.errors import video_not_found
from service.keys import PG_POOL, SETTINGS
from service.models import AnalyticsOut, AnalyticsQuery, DailyViews, DailyViewsQuery, DayCount, VideoIdQuery, ViewBody

api = Api()

VIEW_DESCRIPTION = (
    "No token is needed for a public video (share pages are anonymous); a token, when sent, must be valid. "
    "A private video takes views only from those who may read it. A view counts once per viewer per video "
    "per 24 hours, never the owner's own. The viewer is `viewerId` when given, else a salted hash of the "
    "client IP and User-Agent (raw IPs are never stored). Answers 204 whether or not the view counted."
)
ANALYTICS_DESCRIPTION = (
    "`count` is the number of counted views (see POST /api/video/view); `from` and `to` (UTC days, "
    "inclusive) narrow it to a range."
)


async def optional_user(request: web.Request) -> User | None:
    """No Authorization header: anonymous. A header that is there must hold a valid token (else 401)."""
    if "Authorization" not in request.headers:
        return None
    return await require_user(request)


@api.route(
    "POST",
    "/api/video/view",
    query=VideoIdQuery,
    body=ViewBody,
    status=204,
    errors=(400, 401, 404),
    auth="optional",
    tag="analytics",
    description=VIEW_DESCRIPTION,
)
async def record_video_view(request: web.Request) -> web.StreamResponse:
    """Record a view of the video."""
    user = await optional_user(request)
    query = parse_query(request, VideoIdQuery)
    body = await parse_json_body(request, ViewBody, optional=True)
    pool = request.app[PG_POOL]
    views = request.app[VIEWS]
    ip = client_ip(request, request.app[SETTINGS].trusted_proxy_networks)
    key = viewer_key(await views.salt(pool), query.video_id, body.viewer_id, ip, request.headers.get("User-Agent", ""))
    user_id = user.id if user else None
    video = await record_view(pool, query.video_id, key, user_id, views.clock())
    if video is None or not (video["public"] or video["owner_id"] == user_id):
        raise video_not_found()
    # Counted or not, the same answer: the response tells nobody whether a viewer was seen before.
    return web.Response(status=204)


@api.route(
    "GET",
    "/api/video/analytics",
    query=AnalyticsQuery,
    response=AnalyticsOut,
    errors=(400, 401, 404),
    tag="analytics",
    description=ANALYTICS_DESCRIPTION,
)
async def video_analytics(request: web.Request) -> web.StreamResponse:
    """The number of views of the video."""
    user = await require_user(request)
    query = parse_query(request, AnalyticsQuery)
    count = await readable_view_count(request.app[PG_POOL], query.video_id, user.id, query.from_, query.to)
    if count is None:
        raise video_not_found()
    return json_response(AnalyticsOut(count=count))


@api.route(
    "GET",
    "/api/video/analytics/daily",
    query=DailyViewsQuery,
    response=DailyViews,
    errors=(400, 401, 404),
    tag="analytics",
)
async def daily_video_analytics(request: web.Request) -> web.StreamResponse:
    """Counted views per UTC day for the last `days` days, oldest first, days without views as 0."""
    user = await require_user(request)
    query = parse_query(request, DailyViewsQuery)
    last = utc_day(request.app[VIEWS].clock())
    first = last - timedelta(days=query.days - 1)
    rows = await readable_daily_views(request.app[PG_POOL], query.video_id, user.id, first, last)
    if rows is None:
        raise video_not_found()
    counts = {row["day"]: int(row["count"]) for row in rows}
    days = (first + timedelta(days=n) for n in range(query.days))
    return json_response(DailyViews([DayCount(date=day, count=counts.get(day, 0)) for day in days]))
