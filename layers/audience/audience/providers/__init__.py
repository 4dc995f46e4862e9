"""Outbound channel providers: one interface (base.Provider) and an adapter per platform.

Importing the package loads only the types; each adapter module imports its client library on first send.
"""

from audience.providers.base import (
    ButtonParam,
    Failed,
    Outbound,
    Param,
    Provider,
    Result,
    Sent,
    Template,
)

__all__ = ["ButtonParam", "Failed", "Outbound", "Param", "Provider", "Result", "Sent", "Template"]
