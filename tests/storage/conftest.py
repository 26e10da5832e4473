"""Fixtures of the storage tests: a real S3 API (moto's server on a local port), a bucket per
test, and settings for either backend (`backend` is "local" or "s3")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from service.dev import free_port
from tests.fakes.deepgram import FakeDeepgram

ACCESS_KEY, SECRET_KEY, REGION = "test", "test", "us-east-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_endpoint(moto_url: str) -> str:
    """The URL the app and workers use for S3 (a test may put a proxy in front of moto)."""
    return moto_url


@pytest.fixture
def bucket(moto_url: str) -> str:
    name = f"capvid-{uuid.uuid4().hex[:16]}"
    client = boto3.client(
        "s3", endpoint_url=moto_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
    return name


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides(backend: str, s3_endpoint: str, bucket: str, deepgram: FakeDeepgram) -> dict[str, Any]:
    return {
        "storage_backend": backend,
        "s3_endpoint_url": s3_endpoint,
        "s3_bucket": bucket,
        "s3_region": REGION,
        "s3_access_key_id": SecretStr(ACCESS_KEY),
        "s3_secret_access_key": SecretStr(SECRET_KEY),
        "s3_force_path_style": True,
        "s3_part_bytes": 5 * 1024 * 1024,  # the smallest S3 allows: multipart from 5 MiB on
        "transcription_engine": "deepgram",
        "deepgram_api_key": SecretStr(deepgram.api_key),
        "deepgram_base_url": deepgram.url,  # type: ignore[attr-defined]
    }

