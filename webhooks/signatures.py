"""HMAC-SHA256 signatures over the raw body, as GitHub (X-Hub-Signature-256) and Jira (X-Hub-Signature) send them."""

from __future__ import annotations

import hmac


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.digest(secret.encode(), body, "sha256").hex()


def is_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a `sha256=<hex>` header against the body."""
    if not header or not header.startswith("sha256="):
        return False
    # Bytes, not str: compare_digest refuses non-ASCII text, and a header is attacker-controlled.
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))
