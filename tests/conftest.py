"""Real Postgres and Redis for every test: the configured ones (TEST_DATABASE_URL,
TEST_REDIS_URL) where set, else embedded servers this session starts itself."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient

from config import Settings
from service.app import create_app
from service.migrate import apply_migrations
from tests.fakes.deepgram import FakeDeepgram
from tests.helpers import Api, make_user, reset_database



@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        apply_migrations(url)
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on headless machines
        import pgserver
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    url = server.get_uri()
    apply_migrations(url)
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    from service.dev import embedded_redis

    server, port = embedded_redis(tmp_path_factory.mktemp("redis") / "redis.db")
    yield f"redis://127.0.0.1:{port}/0"
    server.shutdown()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(
    database_url: str, redis_url: str, tmp_path: Path, model_cache: Path, settings_overrides: dict[str, Any]
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "storage_dir": tmp_path / "storage",
        "model_cache_dir": model_cache,
        "outbox_poll_seconds": 0.2,
        "retry_backoff_seconds": 0.05,
        "lease_seconds": 5.0,
        "db_pool_min": 0,
        "db_pool_max": 5,
        "worker_metrics_port": 0,  # burst workers serve no metrics unless a test asks (no fixed port in tests)
        # Tests poll right after they write: the fence makes that deterministic. The default (no fence)
        # has its own tests (tests/events/test_status_poll_unfenced.py).
        "status_cache_fence": True,
    }
    values.update(settings_overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def clean_state(database_url: str, redis_url: str) -> Iterator[None]:
    reset_database(database_url)
    redis_sync.Redis.from_url(redis_url).flushdb()
    yield


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


@pytest.fixture
async def api(client: TestClient, settings: Settings) -> AsyncIterator[Api]:
    yield Api(client, settings)


@pytest.fixture
async def deepgram(aiohttp_server: Any) -> FakeDeepgram:
    """A local server speaking Deepgram's API: fast, scriptable speech-to-text for pipeline tests."""
    fake = FakeDeepgram(api_key="k")
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def alice(settings: Settings) -> str:
    return await make_user(settings, "alice@example.com")


@pytest.fixture
async def bob(settings: Settings) -> str:
    return await make_user(settings, "bob@example.com")


