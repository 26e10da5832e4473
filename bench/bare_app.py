"""The status benchmark's baseline: a bare aiohttp handler answering one constant JSON body.

    python bench/bare_app.py --port P --body '{"transcriptionStatus":"PROCESSING"}' [--reuse-port]

It is run the way `capvid web` runs the real app (`web.run_app`, logging configured at INFO, so the
access log is on in both), on the same event loop; only the handler differs.
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web


def build_app(body: bytes) -> web.Application:
    async def constant(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/video/transcribe/status", constant)
    app.router.add_get("/readyz", constant)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="the JSON body every request gets")
    parser.add_argument("--reuse-port", action="store_true", help="several processes share the port")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(build_app(args.body.encode()), host="127.0.0.1", port=args.port, reuse_port=args.reuse_port or None)


if __name__ == "__main__":
    main()
