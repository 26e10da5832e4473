"""The web process's observability: wiring for `create_app`.

`middlewares(settings)` go before `error_middleware` (outermost first), so they see every
answer, including the errors it turns into JSON; `install(app)` adds the rest.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from config import Settings
from service.observability.endpoint import api
from service.observability.ratelimit import RATE_LIMITER, RateLimiter, rate_limit_middleware
from service.observability.request_id import add_response_headers, observe_middleware

__all__ = ["api", "install", "middlewares"]


def middlewares(settings: Settings) -> list[Middleware]:
    # The rate limit costs nothing when off: it is not installed.
    return [observe_middleware, *([rate_limit_middleware] if settings.rate_limit_per_minute else [])]


def install(app: web.Application, settings: Settings) -> None:
    app.on_response_prepare.append(add_response_headers)
    if settings.rate_limit_per_minute:
        app[RATE_LIMITER] = RateLimiter(settings.rate_limit_per_minute)
