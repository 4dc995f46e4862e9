"""Meta Graph API error objects, shared by the WhatsApp Cloud API and the Messenger/Instagram Send API.

A refusal looks like {"error": {"message", "type", "code", "error_subcode", "error_data": {"details"},
"is_transient", "fbtrace_id"}}; Meta asks integrations to act on `code` (and `details`), not on the
message text, which may change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audience.providers.base import title


@dataclass(frozen=True, slots=True)
class GraphError:
    code: int | None
    subcode: int | None
    message: str
    details: str
    is_transient: bool
    trace_id: str

    @property
    def title(self) -> str:
        text = self.message or "Graph API error"
        if self.details and self.details not in text:
            text = f"{text}: {self.details}"
        return title(text)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def graph_error(body: dict[str, Any]) -> GraphError | None:
    """The error object of a Graph API answer; None when the body has none."""
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return GraphError(
        code=_int(error.get("code")),
        subcode=_int(error.get("error_subcode")),
        message=str(error.get("message") or ""),
        details=str(details or ""),
        is_transient=error.get("is_transient") is True,
        trace_id=str(error.get("fbtrace_id") or ""),
    )
