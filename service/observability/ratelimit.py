"""Optional per-token rate limit on `/api` (RATE_LIMIT_PER_MINUTE; 0, the default, is off).

A fixed one-minute window counted in Redis: one MULTI/EXEC round trip (INCR, EXPIRE) per
request. Callers are told apart by a hash of their bearer token (never the token itself),
anonymous ones by a hash of their client IP (the same `TRUSTED_PROXIES` rules as views).
Redis unreachable or slow: the request goes through (fail open) and the lapse is logged.
When the limit is off the middleware is not installed at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from service.analytics.viewers import client_ip
from service.auth.tokens import bearer_token
from service.errors import too_many_requests
from service.keys import REDIS, SETTINGS
from service.observability.request_id import RESPONSE_HEADERS

log = logging.getLogger("capvid.ratelimit")

WINDOW_SECONDS = 60
LIMITED_PREFIX = "/api/"
KEY_PREFIX = "capvid:ratelimit:"
REDIS_TIMEOUT_SECONDS = 0.5
FAIL_OPEN_LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Decision:
    limit: int
    count: int
    retry_after: int  # seconds until the window ends

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(max(0, self.limit - self.count))}


@dataclass
class RateLimiter:
    """Per-app limiter state. Tests replace `clock` to pin the window."""

    limit: int
    clock: Callable[[], float] = time.time
    _last_lapse_logged: float = field(default=float("-inf"), repr=False)

    async def hit(self, redis: ArqRedis, subject: str) -> Decision | None:
        """Count one request of `subject`; None when Redis could not say (the caller lets it through)."""
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        key = f"{KEY_PREFIX}{subject}:{window}"
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, WINDOW_SECONDS + 5)
                    count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._log_lapse(exc)
            return None
        retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        return Decision(self.limit, int(count), retry_after)

    def _log_lapse(self, exc: BaseException) -> None:
        # Once a minute, not once a request: Redis being down is one event.
        now = time.monotonic()
        if now - self._last_lapse_logged >= FAIL_OPEN_LOG_EVERY_SECONDS:
            self._last_lapse_logged = now
            log.warning("rate limit not enforced, Redis did not answer: %s", f"{type(exc).__name__}: {exc}")


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


def subject_of(request: web.Request) -> str:
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        return "token:" + _digest("token", token)
    return "ip:" + _digest("ip", client_ip(request, request.app[SETTINGS].trusted_proxy_networks))


def _digest(kind: str, value: str) -> str:
    # Domain-separated, so a key can be matched neither to the tokens table's hashes nor to an IP list.
    return hashlib.sha256(f"capvid-ratelimit:{kind}:{value}".encode()).hexdigest()[:32]


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(LIMITED_PREFIX):
        return await handler(request)
    decision = await request.app[RATE_LIMITER].hit(request.app[REDIS], subject_of(request))
    if decision is None:
        return await handler(request)
    headers = decision.headers()
    # observe_middleware (outside this one) puts these on the response however it ends.
    response_headers = RESPONSE_HEADERS.get()
    if response_headers is not None:
        response_headers.update(headers)
    if not decision.allowed:
        raise too_many_requests(decision.limit, decision.retry_after, headers)
    return await handler(request)
