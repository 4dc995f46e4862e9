"""Domain exceptions; each adapter (HTTP, queue, state machine) maps them to its own failure shape."""

from __future__ import annotations

import math
from typing import Any


class AudienceError(Exception):
    """Base of every domain error."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigurationError(AudienceError):
    """The function's environment is missing or invalid settings."""

    code = "configuration_error"


class NotFoundError(AudienceError):
    """The object does not exist, or belongs to another org (the two are indistinguishable)."""

    code = "not_found"


class ValidationError(AudienceError):
    """Input breaks a domain rule; `fields` names each offending field and value."""

    code = "validation_error"

    def __init__(self, message: str, fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []

    @classmethod
    def for_field(cls, field: str, value: Any, message: str) -> ValidationError:
        return cls(f"{field}: {message}", [{"field": field, "value": displayable(value), "message": message}])


def displayable(value: Any) -> Any:
    """A rejected input value in a form any JSON encoder can carry back to the caller.

    Non-finite numbers and text that is not valid Unicode are shown as text; structures are left out
    (the field name already says where the problem is).
    """
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return None


class PayloadTooLargeError(AudienceError):
    """An upload is over its size limit; refused before anything is read."""

    code = "payload_too_large"


class ConflictError(AudienceError):
    """The write would break a uniqueness or state rule (for example an identity owned by another contact)."""

    code = "conflict"


class ConcurrentUpdateError(AudienceError):
    """Another writer changed the object first; the caller may retry with fresh state."""

    code = "concurrent_update"


class UpstreamError(AudienceError):
    """A platform the product calls (a channel's API) refused or failed; the message carries its words."""

    code = "upstream_error"


class AuthenticationError(AudienceError):
    """Missing, malformed, unknown or revoked credentials."""

    code = "unauthorized"


class RateLimitedError(AudienceError):
    """The caller exceeded its request budget (`limit`), or a provider is rate limiting the send; retry
    after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, limit: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
