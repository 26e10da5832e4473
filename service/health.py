"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web

from service.api import Api, json_response
from service.db import execute
from service.keys import PG_POOL, REDIS
from service.models import HealthOut

api = Api()
CHECK_TIMEOUT = 2.0


@api.route("GET", "/healthz", response=HealthOut, auth=False, tag="health")
async def healthz(request: web.Request) -> web.StreamResponse:
    """The process is alive."""
    return json_response(HealthOut(status="ok"))


@api.route("GET", "/readyz", response=HealthOut, errors=(503,), auth=False, tag="health")
async def readyz(request: web.Request) -> web.StreamResponse:
    """Postgres and Redis are reachable (503 when either is not)."""
    checks = {
        "postgres": await _check(execute(request.app[PG_POOL], "SELECT 1")),
        "redis": await _check(request.app[REDIS].ping()),
    }
    ready = all(value == "ok" for value in checks.values())
    return json_response(HealthOut(status="ok" if ready else "unavailable", checks=checks), status=200 if ready else 503)


async def _check(probe: object) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)  # type: ignore[arg-type]
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"
