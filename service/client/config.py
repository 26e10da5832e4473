"""Where the client finds its server and token: arguments, then the environment, then the
token `capvid dev` keeps for its local user."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from service.client.errors import CapvidConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV, TOKEN_ENV = "CAPVID_URL", "CAPVID_TOKEN"
DEV_TOKEN_FILE = Path(".capvid") / "dev-token"  # written by `capvid dev` (default --data-dir)


@dataclass(frozen=True)
class Connection:
    base_url: URL  # the server's root, without /api
    token: str


def resolve_connection(
    base_url: str | None = None, token: str | None = None, dev_token_file: Path | None = DEV_TOKEN_FILE
) -> Connection:
    url_text = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
    url = URL(url_text.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise CapvidConfigError(f"not an http(s) URL: {url_text!r} (set {URL_ENV} or pass --url)")
    if url.path.endswith("/api"):
        url = url.with_path(url.path[: -len("/api")])  # a Cap-style base URL works too
    found = token or os.environ.get(TOKEN_ENV) or _dev_token(dev_token_file)
    if not found:
        raise CapvidConfigError(f"no API token: set {TOKEN_ENV}, pass --token, or run `capvid dev` here")
    return Connection(base_url=url, token=found.strip())


def _dev_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
