"""A small route registry: each handler declares its query, body, response and errors once.

The same declaration registers the aiohttp route, parses and validates input with the
pydantic models, and produces the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from service.errors import bad_request

HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

ERROR_DESCRIPTIONS = {
    400: "Bad request: missing or invalid parameters or body",
    401: "Missing, malformed, unknown or revoked token",
    404: "No such video, or the caller may not see or change it",
    409: "The video is not in a state that allows this",
    413: "The body is larger than allowed",
    503: "A backing service is unreachable",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: HandlerFn
    summary: str
    tag: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_media_type: str | None = None  # a raw (non-JSON) body, e.g. a video upload
    response: type[BaseModel] | None = None
    status: int = 200
    response_media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    auth: bool | Literal["optional"] = True  # "optional": anonymous callers too, a sent token must be valid
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Api:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, **kwargs: Any) -> Callable[[HandlerFn], HandlerFn]:
        def register(handler: HandlerFn) -> HandlerFn:
            summary = kwargs.pop("summary", None) or (handler.__doc__ or "").strip().splitlines()[0]
            self.operations.append(Operation(method=method, path=path, handler=handler, summary=summary, **kwargs))
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)


def describe_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_query(request: web.Request, model: type[M]) -> M:
    query = request.rel_url.query
    duplicated = sorted({key for key in query if len(query.getall(key)) > 1})
    if duplicated:
        raise bad_request(f"{duplicated[0]}: given more than once")
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise bad_request(describe_errors(exc)) from None


async def parse_json_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    raw = await request.read()
    if not raw.strip() and optional:
        return model()
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("body: not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise bad_request(describe_errors(exc)) from None


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON, though Python's parser takes them.
    raise ValueError(f"{name} is not valid JSON")


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True).encode(), status=status, content_type="application/json"
    )
