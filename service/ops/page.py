"""The ops dashboard: one self-contained HTML page (inline script and style, no build step).

It is served to anyone (it holds no data); its script asks for an admin token, keeps it in
`sessionStorage` only, and calls the ops API with it. The Content-Security-Policy allows
exactly that inline script (by its hash), same-origin fetches and nothing else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from aiohttp import web

PAGE = Path(__file__).parent / "static" / "ops.html"
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@functools.cache
def _page() -> tuple[bytes, str]:
    html = PAGE.read_text(encoding="utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() + "'"
        for m in _SCRIPT.finditer(html)
    )
    policy = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), policy


def page_response() -> web.Response:
    body, policy = _page()
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": policy,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
