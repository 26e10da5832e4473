"""One delivery attempt over HTTP: a signed POST, no redirects, a deadline, checked addresses."""

from __future__ import annotations

import time
from dataclasses import dataclass
import aiohttp

from service.webhooks.signing import SIGNATURE_HEADER, signature_header
from service.webhooks.urls import GuardedResolver, RefusedUrl, check_address, literal_address, parse_url

USER_AGENT = "capvid-webhooks/1"
EXCERPT_BYTES = 200


@dataclass(frozen=True)
class Answer:
    status: int | None  # the receiver's HTTP status; None when it gave none
    error: str | None  # what went wrong, for the delivery log

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def delivery_headers(secret: str, event_id: str, event_type: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Capvid-Event-Id": event_id,
        "Capvid-Event-Type": event_type,
        # Signed just before sending: the timestamp tells the receiver how fresh this attempt is.
        SIGNATURE_HEADER: signature_header(secret, int(time.time()), body),
    }


async def post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> Answer:
    try:
        target = parse_url(url)
        literal = literal_address(target.host or "")
        if literal is not None and not allow_private:
            check_address(literal)  # an IP literal is never given to the resolver
        # The guarded resolver is the only lookup: the addresses it checked are the ones connected to.
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_private), use_dns_cache=False, force_close=True
        )
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
        ) as session:
            async with session.post(target, data=body, headers=headers, allow_redirects=False) as response:
                excerpt = await response.content.read(EXCERPT_BYTES)
                return Answer(response.status, _describe(response, excerpt))
    except RefusedUrl as exc:
        return Answer(None, str(exc))
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}")


def _describe(response: aiohttp.ClientResponse, excerpt: bytes) -> str | None:
    status = response.status
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status}: redirect to {response.headers.get('Location', '?')} not followed"
    text = excerpt.decode("utf-8", "replace").strip()
    return f"HTTP {status}" + (f": {text}" if text else "")
