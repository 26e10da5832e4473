"""The one Settings object: read from the environment and an optional `.env`.

It is built once per process and injected everywhere (`create_app(settings)`,
the worker's `startup(ctx)`), never read from globals.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal

from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(SystemExit):
    """A wrong value: start-up stops with one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/capvid",
        description="PostgreSQL URL (a unix socket as ?host=/dir); `capvid dev` embeds one when unset",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis://, rediss:// or unix:// URL")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = Field(None, description="base URL printed in hints; defaults to http://HOST:PORT")

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = Path(".capvid/storage")
    max_upload_bytes: int = Field(5 * 1024**3, gt=0)
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint (MinIO, R2, Ceph, Garage); AWS when unset")
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_force_path_style: bool = Field(False, description="path-style addressing (MinIO, Ceph, Garage)")
    s3_part_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, description="multipart upload part size")

    # Views: a viewer without a viewerId is an HMAC of the client IP and User-Agent, keyed by the view salt.
    trusted_proxies: str = Field(
        "", description="comma-separated IPs or networks of reverse proxies whose X-Forwarded-For is believed"
    )
    view_salt: SecretStr | None = Field(
        None, description="key of viewer hashes (16+ characters); when unset, generated once and kept in the database"
    )

    # Pools
    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)

    # Outbox relay: how often every process sweeps for rows not yet handed to Redis
    # (a NOTIFY wakes it at once; the sweep covers a Redis that was down).
    outbox_poll_seconds: float = Field(1.0, gt=0)
    arq_queue_name: str = "arq:queue"

    # Events: the event stream's heartbeat comment, and how many tokens and videos each web process
    # keeps in memory for the status route (kept exact by NOTIFY; 0 turns the cache off).
    event_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300, description="how often an event stream sends its `: heartbeat` comment"
    )
    status_cache_size: int = Field(
        100_000, ge=0, description="tokens and videos (each) kept in memory per web process; 0: read the database"
    )
    status_cache_fence: bool = Field(
        False,
        description="on: a cached answer first waits for one round trip on the listening connection (shared by "
        "all requests waiting), so a change committed before the request is always seen, at a cost in tail "
        "latency under load; off: a change is seen as soon as its notification reaches the web process "
        "(microseconds, a few ms on a loaded machine), and polls never wait",
    )

    # Transcription
    transcription_engine: Literal["whisper", "deepgram", "assemblyai"] = "whisper"
    transcription_max_attempts: int = Field(3, ge=1, le=50)
    transcription_timeout_seconds: int = Field(3 * 3600, gt=0)
    retry_backoff_seconds: float = Field(5.0, ge=0, description="first retry delay; doubles each attempt")
    lease_seconds: float = Field(60.0, gt=0, description="a job's claim expires this long after its last heartbeat")
    unclaimed_requeue_seconds: float = Field(
        600.0, gt=0, description="a PROCESSING video no job has claimed for this long is enqueued again"
    )
    recovery_interval_seconds: int = Field(15, ge=1, le=60)
    # SIGTERM: stop taking jobs, let running ones finish this long, then hand back what is left.
    # Keep it under the supervisor's stop timeout (docker: 10 s) or the worker is SIGKILLed mid-job.
    worker_grace_seconds: float = Field(
        8.0, ge=0, le=3600, description="on SIGTERM, how long running jobs may finish before being handed back"
    )
    # Ops: how often each worker reports it is alive, and how long job history is kept.
    worker_health_seconds: int = Field(
        10, ge=1, le=3600, description="each worker's heartbeat interval; `capvid worker --check` allows this long"
    )
    job_history_days: float = Field(7.0, gt=0, description="job_runs rows older than this are purged by recovery")
    whisper_model: str = Field("base", description="model size, or a local CTranslate2 model folder")
    whisper_device: str = "cpu"
    whisper_compute_type: str = "int8"
    whisper_cpu_threads: int = Field(0, ge=0)
    model_cache_dir: Path = Field(Path.home() / ".cache" / "capvid" / "models")
    deepgram_api_key: SecretStr | None = None
    deepgram_base_url: str = "https://api.deepgram.com"
    assemblyai_api_key: SecretStr | None = None
    assemblyai_base_url: str = "https://api.assemblyai.com"
    assemblyai_poll_seconds: float = Field(3.0, gt=0)
    engine_http_timeout_seconds: float = Field(300.0, gt=0)

    # AI metadata
    ai_enabled: bool = True
    ai_engine: Literal["builtin", "openai"] = "builtin"
    ai_min_words: int = Field(5, ge=0, description="shorter transcripts are SKIPPED")
    ai_max_attempts: int = Field(3, ge=1, le=50)
    ai_base_url: str = "https://api.openai.com/v1"
    ai_api_key: SecretStr | None = None
    ai_model: str = "gpt-4o-mini"
    ai_chunk_words: int = Field(3000, ge=100, description="map-reduce chunk size for long transcripts")
    ai_http_timeout_seconds: float = Field(120.0, gt=0)

    # Observability and limits
    log_format: Literal["json", "text"] = Field("json", description="one JSON object a line, or readable text")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr | None = Field(
        None, description="when set, /metrics (web and worker) wants `Authorization: Bearer <it>`; open when unset"
    )
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(
        9101, ge=0, le=65535, description="each worker's /metrics port (0: none); one port per worker on a host"
    )
    rate_limit_per_minute: int = Field(0, ge=0, description="requests a minute per token (or anonymous IP); 0: off")

    # Webhooks: signed deliveries retried with exponential backoff for a day.
    webhook_allow_private_urls: bool = Field(
        False, description="allow webhook URLs that reach loopback, private, link-local or reserved addresses"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=300, description="one delivery's HTTP call")
    webhook_retry_base_seconds: float = Field(10.0, gt=0, description="first retry delay; doubles each attempt")
    webhook_retry_max_seconds: float = Field(3600.0, gt=0, description="longest delay between two attempts")
    webhook_retry_window_seconds: float = Field(
        86400.0, gt=0, description="a delivery is retried this long after its first attempt, then failed"
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if urlparse(value).scheme not in {"postgres", "postgresql"}:
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlparse(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_token")
    @classmethod
    def _no_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        # METRICS_TOKEN= (empty) in an env file means "not set", not "the empty token".
        return value if value is not None and value.get_secret_value() else None

    @field_validator("view_salt")
    @classmethod
    def _long_salt(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _engine_secrets_present(self) -> "Settings":
        # Secrets have no defaults: a chosen engine without its key is a configuration error.
        if self.transcription_engine == "deepgram" and self.deepgram_api_key is None:
            raise ValueError("DEEPGRAM_API_KEY is required when TRANSCRIPTION_ENGINE=deepgram")
        if self.transcription_engine == "assemblyai" and self.assemblyai_api_key is None:
            raise ValueError("ASSEMBLYAI_API_KEY is required when TRANSCRIPTION_ENGINE=assemblyai")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND=s3")
        if self.ai_enabled and self.ai_engine == "openai" and self.ai_api_key is None:
            raise ValueError("AI_API_KEY is required when AI_ENGINE=openai")
        return self

    @property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        parts = filter(None, (part.strip() for part in self.trusted_proxies.split(",")))
        return tuple(ip_network(part, strict=False) for part in parts)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning a validation error into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = "_".join(str(part) for part in first["loc"]).upper() or "configuration"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"capvid: invalid {variable}: {message}") from None
