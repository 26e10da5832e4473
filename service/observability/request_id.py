"""The outermost middleware: request id, access log line, HTTP duration histogram.

The request id is the caller's `X-Request-ID` when it is sane (1–128 characters: letters,
digits and `-._~:/+=@`), else a new uuid4 hex. It is echoed in the response, set in the
logging context, and stored with any job request the call makes (see `context.py`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from aiohttp import web
from aiohttp.typedefs import Handler

from service.metrics import HTTP_REQUEST_SECONDS
from service.observability.context import REQUEST_ID

HEADER = "X-Request-ID"
UNMATCHED = "unmatched"
# aiohttp takes every method its parser knows (PROPFIND, MKCOL, …): the rare ones share one label.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SANE_ID = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")

access_log = logging.getLogger("capvid.access")

# Headers for this request's response, whatever way it ends (returned, raised, or streamed and
# prepared inside the handler): the request id, and the rate limit's headers.
RESPONSE_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("capvid_response_headers", default=None)


def request_id_from(header: str | None) -> str:
    if header is not None and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def route_label(request: web.Request) -> str:
    # The route's template, never the raw path: ids in paths would make the label unbounded.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request_id_from(request.headers.get(HEADER))
    headers = {HEADER: request_id}
    id_token = REQUEST_ID.set(request_id)
    headers_token = RESPONSE_HEADERS.set(headers)
    started = time.perf_counter()
    # Only a cancellation gets past error_middleware unanswered: nginx's "client closed request".
    status = 499
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers.update(headers)
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers.update(headers)
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = route_label(request)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUEST_SECONDS.labels(route, method, str(status)).observe(elapsed)
        access_log.info(
            "%s %s %s", request.method, request.path, status,
            extra={"method": request.method, "route": route, "path": request.path, "status": status,
                   "duration_ms": round(elapsed * 1000, 2)},
        )
        RESPONSE_HEADERS.reset(headers_token)
        REQUEST_ID.reset(id_token)


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: a response the handler streams itself is prepared while the request's
    context is still set, before `observe_middleware` could add headers to it."""
    headers = RESPONSE_HEADERS.get()
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
