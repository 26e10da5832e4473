"""The `capvid` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence

from config import Settings, load_settings
from service.admin import AdminError, add_user, issue_token, withdraw_token
from service.cli_video import add_video_commands, run_video
from service.observability.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capvid", description="Self-hosted, Cap-compatible Video API")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations (idempotent)")
    commands.add_parser("web", help="run the HTTP API")
    worker = commands.add_parser("worker", help="run the arq worker")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 if a worker reported within WORKER_HEALTH_SECONDS, else 1"
    )
    dev = commands.add_parser("dev", help="run everything locally, embedding Postgres and Redis where unset")
    dev.add_argument("--data-dir", default=".capvid", help="where embedded data lives (default .capvid)")

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    create = user.add_parser("create", help="create a user; prints its id")
    create.add_argument("email")
    create.add_argument("--name", default="")
    create.add_argument("--admin", action="store_true")

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(dest="action", required=True)
    token_create = token.add_parser("create", help="create a token; prints it alone on the last line")
    token_create.add_argument("email")
    token_create.add_argument("--label", default="")
    token_revoke = token.add_parser("revoke", help="revoke a token by its id")
    token_revoke.add_argument("token_id", type=int)
    add_video_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "video":  # a client of a running server: needs none of its settings
        return run_video(args)
    if args.command == "dev":
        # A developer's console: readable lines, from dev and from the web and worker it starts
        # (they inherit the environment) unless LOG_FORMAT says otherwise.
        os.environ.setdefault("LOG_FORMAT", "text")
        setup_logging("text")
        from service.dev import run_dev

        return run_dev(args.data_dir)
    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    try:
        return _run(args, settings)
    except AdminError as exc:
        print(f"capvid: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        from service.migrate import apply_migrations

        print(f"applied {apply_migrations(settings.database_url)} migration(s)")
    elif args.command == "web":
        from aiohttp import web

        from service.app import create_app

        # Our middleware writes the access log (with the route and request id); the "Running on"
        # banner goes to the log too, so a JSON log stays JSON.
        app = create_app(settings)
        # What the imports built lives as long as the process: frozen, it is left out of the
        # collector's full passes, which otherwise walk it again each time (they stall the loop
        # longest when thousands of event streams are open).
        gc.freeze()
        web.run_app(app, host=settings.host, port=settings.port, access_log=None,
                    print=logging.getLogger("capvid.web").info)
    elif args.command == "worker" and args.check:
        from service.ops.heartbeats import run_check

        return run_check(settings)
    elif args.command == "worker":
        from workers.settings import run_worker

        run_worker(settings, burst=args.burst)
    elif args.command == "user":
        print(asyncio.run(add_user(settings, args.email, args.name, args.admin)))
    elif args.command == "token" and args.action == "create":
        token_id, token = asyncio.run(issue_token(settings, args.email, args.label))
        print(f"token id {token_id} for {args.email} (shown once; only its hash is stored):")
        print(token)
    elif args.command == "token" and args.action == "revoke":
        asyncio.run(withdraw_token(settings, args.token_id))
        print(f"revoked token {args.token_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
