"""Every error is JSON with a fixed body; the cause of a 500 goes to the log, never to the client."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from service.db import CONNECTION_ERRORS

log = logging.getLogger("capvid.http")


class ApiError(web.HTTPException):
    """An HTTP error whose JSON body is part of the contract."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=web.json_response(body).text, content_type="application/json", headers=headers)
        self.body_json = body


def unauthorized() -> ApiError:
    return ApiError(401, {"error": "Unauthorized"}, headers={"WWW-Authenticate": "Bearer"})


def video_not_found() -> ApiError:
    return ApiError(404, {"error": "Video not found"})


def not_found(what: str = "Not found") -> ApiError:
    return ApiError(404, {"error": what})


def bad_request(message: str) -> ApiError:
    return ApiError(400, {"error": "Bad request", "message": message})


def conflict(message: str) -> ApiError:
    return ApiError(409, {"error": "Conflict", "message": message})


def too_large(message: str) -> ApiError:
    return ApiError(413, {"error": "Payload too large", "message": message})


def too_many_requests(limit: int, retry_after: int, headers: dict[str, str]) -> ApiError:
    message = f"More than {limit} requests a minute; retry in {retry_after} s"
    return ApiError(
        429, {"error": "Too many requests", "message": message}, headers={**headers, "Retry-After": str(retry_after)}
    )


def unavailable(message: str) -> ApiError:
    return ApiError(503, {"error": "Service unavailable", "message": message})


INTERNAL_ERROR = {"error": "Internal server error", "message": "Failed to process request"}

# aiohttp's own exceptions (routing, body size) turned into JSON bodies.
_HTTP_BODIES: dict[int, dict[str, str]] = {
    404: {"error": "Not found"},
    405: {"error": "Method not allowed"},
    413: {"error": "Payload too large", "message": "Request body is too large"},
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = _HTTP_BODIES.get(exc.status, {"error": exc.reason})
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        raise ApiError(exc.status, body, headers=headers) from None
    except CONNECTION_ERRORS as exc:
        # An outage fails every request the same way: one line each, not a traceback each.
        log.warning("database or queue unreachable: %s %s: %s", request.method, request.path, exc)
        raise unavailable("A backing service is unreachable; try again shortly") from None
    except Exception:
        log.exception("unhandled error: %s %s", request.method, request.path)
        raise ApiError(500, INTERNAL_ERROR) from None
