"""The FastAPI application: routers, error handlers, body limits and rate-limit headers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from audience.api import errors
from audience.api.routers import (
    analytics,
    broadcasts,
    connections,
    consent,
    contacts,
    do_not_contact,
    events,
    exports,
    followups,
    imports,
    orgs,
    policies,
    segments,
    tags,
    webhook_endpoints,
)

DESCRIPTION = """
Contacts, segments and messaging for your audience. Authenticate with `Authorization: Bearer <API key>`.
Every route lives under `/orgs/{org_id}`; `c` stands for the key's own org. Ids of other orgs answer 404.
"""


# Routes that take a file in the body, and how much they take (more than other requests).
UPLOAD_LIMITS = {"/imports/file": 5 * 1024 * 1024}


class BodyLimit:
    """ASGI middleware answering 413 when a request body exceeds `limit` bytes (or, on an upload route,
    its own limit), declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.default = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((size for suffix, size in UPLOAD_LIMITS.items() if path.endswith(suffix)), self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, send, limit)
            return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(scope, send, limit)

    async def _too_large(self, scope: dict[str, Any], send: Any, limit: int) -> None:
        response = errors.error_response(413, "payload_too_large", f"request body exceeds {limit} bytes")
        await response(scope, None, send)  # type: ignore[arg-type]


class _TooLarge(Exception):
    pass


class RateLimitHeaders:
    """ASGI middleware adding X-RateLimit-* headers from the request's rate window, unless the response
    already reports a limit of its own (a broadcast's send limit answering 429)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: dict[str, Any]) -> None:
            window = state.get("rate")
            if message["type"] == "http.response.start" and window is not None:
                headers = list(message.get("headers") or [])
                if any(name.lower() == b"x-ratelimit-limit" for name, _ in headers):
                    await send(message)
                    return
                headers += [
                    (b"x-ratelimit-limit", str(window.limit).encode()),
                    (b"x-ratelimit-remaining", str(window.remaining).encode()),
                    (b"x-ratelimit-reset", str(window.reset_in).encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(*, max_body_bytes: int | None = None) -> FastAPI:
    """Build the application. Settings are read when the first request needs them, not here."""
    app = FastAPI(title="Audience API", version="1.0.0", description=DESCRIPTION)
    errors.install(app)
    app.include_router(orgs.router)
    app.include_router(contacts.router)
    app.include_router(segments.router)
    app.include_router(segments.contact_router)
    app.include_router(events.router)
    app.include_router(tags.router)
    app.include_router(tags.contact_router)
    app.include_router(do_not_contact.router)
    app.include_router(consent.router)
    app.include_router(exports.router)
    app.include_router(imports.router)
    app.include_router(connections.router)
    app.include_router(connections.settings_router)
    app.include_router(connections.contact_router)
    app.include_router(broadcasts.router)
    app.include_router(broadcasts.contact_router)
    app.include_router(broadcasts.public_router)
    app.include_router(analytics.router)
    app.include_router(policies.router)
    app.include_router(followups.contact_router)
    app.include_router(followups.rules_router)
    app.include_router(webhook_endpoints.router)

    @app.get("/health", tags=["health"], summary="Liveness check (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    if max_body_bytes is None:
        from audience.settings import get_settings

        max_body_bytes = get_settings().max_body_bytes
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    return app
