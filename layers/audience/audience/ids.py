"""Identifiers: time-ordered, URL-safe and prefixed by what they name."""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def ulid(now_ms: int | None = None) -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits, sortable by creation time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _b32(ms, 10) + _b32(int.from_bytes(os.urandom(10), "big"), 16)


def derived(key: str) -> str:
    """26 base32 characters derived from `key` (SHA-256): the same key always gives the same id, so a
    record written for an event is the same record when the event is processed again."""
    return _b32(int.from_bytes(hashlib.sha256(key.encode()).digest()[:17], "big"), 26)


def new_id(prefix: str) -> str:
    """A new identifier such as `ct_01j...`."""
    return f"{prefix}_{ulid()}"


def random_token(length: int) -> str:
    """`length` random base32 characters (5 bits each) from the OS CSPRNG."""
    return _b32(int.from_bytes(os.urandom((length * 5 + 7) // 8), "big"), length)
