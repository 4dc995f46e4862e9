"""Org-level records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldType = Literal["string", "number", "boolean", "date", "datetime"]
FIELD_TYPES: tuple[str, ...] = ("string", "number", "boolean", "date", "datetime")


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    default_country: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    org_id: str
    name: str
    prefix: str
    created_at: str
    rate_limit_per_minute: int | None = None
    key_hash: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the org an authenticated API key belongs to."""

    org_id: str
    key_id: str
    rate_limit_per_minute: int


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    name: str
    type: str
    label: str
    created_at: str


@dataclass(frozen=True, slots=True)
class RateWindow:
    """The state of a caller's current rate-limit window after counting one request."""

    limit: int
    remaining: int
    reset_in: int
