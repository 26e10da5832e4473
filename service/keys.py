"""Typed app state: every resource the handlers share, opened in `cleanup_ctx`."""

from __future__ import annotations

import aiopg
from aiohttp import web
from arq.connections import ArqRedis

from config import Settings
from service.storage import Storages

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", aiopg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
STORAGES = web.AppKey("storages", Storages)
