"""Signatures of outbound webhook deliveries, and the check a receiver runs (copy `verify` as it is).

    Audience-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The timestamp is part of what is signed, so a receiver that refuses old timestamps refuses replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Audience-Signature"
DEFAULT_TOLERANCE = 300  # seconds a receiver should accept between the signature's time and its own clock


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int, *, previous: str | None = None) -> str:
    """The value of the Audience-Signature header for `body` sent at `timestamp`; with a second `v1=` signed
    with `previous` (the secret before a rotation, during its grace period) when given."""
    header = f"t={timestamp},v1={signature(secret, timestamp, body)}"
    if previous is not None and previous != secret:
        header += f",v1={signature(previous, timestamp, body)}"
    return header


def verify(secret: str, header: str, body: bytes, tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> bool:
    """Whether `header` (the Audience-Signature value) signs the raw `body` with `secret`, at a time no further
    than `tolerance` seconds from now. Compare against the raw bytes received, before any JSON parsing."""
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
