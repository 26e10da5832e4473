"""Webhook secrets and signatures: `Capvid-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.

The scheme is Mux's (and Stripe's): the timestamp is signed with the body, so a receiver can
refuse old replays, and the key is the endpoint's secret exactly as shown once at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Capvid-Signature"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256, keyed by the secret's UTF-8 bytes, of `<timestamp>.<body>`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"
