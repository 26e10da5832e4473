"""Schema migrations with yoyo: `capvid migrate` applies what is missing, idempotently."""

from __future__ import annotations

from importlib import resources

from yoyo import get_backend, read_migrations


def migrations_dir() -> str:
    return str(resources.files("service") / "migrations")


def apply_migrations(database_url: str) -> int:
    """Apply pending migrations; returns how many were applied."""
    backend = get_backend(database_url)
    migrations = read_migrations(migrations_dir())
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)
