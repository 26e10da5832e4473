"""Comments (text) and reactions (a single emoji) on a video."""

from __future__ import annotations

from datetime import timezone

from aiohttp import web

from service.api import Api, json_response, parse_json_body, parse_query
from service.auth.caller import require_user
from service.comments.queries import delete_comment, insert_comment, readable_comments
from service.db import Row
from service.errors import not_found, video_not_found
from service.keys import PG_POOL
from service.models import Comment, CommentBody, CommentIdQuery, CommentPage, CommentsQuery, VideoIdQuery

api = Api()


def comment_from_row(row: Row) -> Comment:
    return Comment(
        id=str(row["id"]),
        video_id=row["video_id"],
        author_id=str(row["author_id"]),
        author_name=row["author_name"],
        type=row["type"],
        content=row["content"],
        timestamp=row["timestamp"],
        created_at=row["created_at"].astimezone(timezone.utc),
    )


@api.route(
    "POST",
    "/api/video/comment",
    query=VideoIdQuery,
    body=CommentBody,
    response=Comment,
    status=201,
    errors=(400, 401, 404),
    tag="comments",
    description="Anyone who may read the video may comment on it. `type: emoji` (a reaction) takes a single emoji.",
)
async def create_comment(request: web.Request) -> web.StreamResponse:
    """Comment on, or react to, a video."""
    user = await require_user(request)
    query = parse_query(request, VideoIdQuery)
    body = await parse_json_body(request, CommentBody)
    row = await insert_comment(request.app[PG_POOL], query.video_id, user.id, body.type, body.content, body.timestamp)
    if row is None:
        raise video_not_found()
    return json_response(comment_from_row(row), status=201)


@api.route(
    "GET", "/api/video/comments", query=CommentsQuery, response=CommentPage, errors=(400, 401, 404), tag="comments"
)
async def list_comments(request: web.Request) -> web.StreamResponse:
    """The video's comments and reactions, oldest first, a page at a time."""
    user = await require_user(request)
    query = parse_query(request, CommentsQuery)
    after = int(query.cursor) if query.cursor else None
    rows = await readable_comments(request.app[PG_POOL], query.video_id, user.id, query.limit + 1, after, query.type)
    if rows is None:
        raise video_not_found()
    page, more = rows[: query.limit], len(rows) > query.limit
    next_cursor = str(page[-1]["id"]) if more else None
    return json_response(CommentPage(comments=[comment_from_row(r) for r in page], next_cursor=next_cursor))


@api.route(
    "DELETE",
    "/api/video/comment",
    query=CommentIdQuery,
    status=204,
    errors=(400, 401, 404),
    tag="comments",
    description="The comment's author or the video's owner may delete it; to anyone else it is not found.",
)
async def remove_comment(request: web.Request) -> web.StreamResponse:
    """Delete a comment or reaction."""
    user = await require_user(request)
    query = parse_query(request, CommentIdQuery)
    if not await delete_comment(request.app[PG_POOL], query.comment_id, user.id):
        raise not_found("Comment not found")
    return web.Response(status=204)
