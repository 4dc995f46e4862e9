"""Domain errors and request validation failures mapped to HTTP responses, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from audience.errors import (
    AudienceError,
    AuthenticationError,
    ConcurrentUpdateError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UpstreamError,
    ValidationError,
    displayable,
)

_STATUS: list[tuple[type[AudienceError], int]] = [
    (NotFoundError, 404),
    (ValidationError, 422),
    (ConcurrentUpdateError, 409),
    (ConflictError, 409),
    (AuthenticationError, 401),
    (RateLimitedError, 429),
    (PayloadTooLargeError, 413),
    (UpstreamError, 502),
]


def _echo_fields(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**f, "value": displayable(f.get("value"))} for f in fields]


def _count(name: str) -> None:
    """Add one to a CloudWatch metric (EMF, flushed by the function's Powertools handler)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    Metrics().add_metric(name=name, unit=MetricUnit.Count, value=1)


def error_response(
    http_status: int, code: str, message: str, headers: dict[str, str] | None = None, /, **extra: Any
) -> JSONResponse:
    """The error body; `extra` are the error's details (any names, `status` included)."""
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": body}, status_code=http_status, headers=headers)


def _domain_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AudienceError)
    status = next((s for cls, s in _STATUS if isinstance(error, cls)), 500)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = dict(error.details)
    if isinstance(error, ValidationError):
        extra["fields"] = _echo_fields(error.fields)
        message = error.message.encode("utf-8", "backslashreplace").decode("utf-8")
        return error_response(422, error.code, message, headers, **extra)
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="audience"'
    if isinstance(error, RateLimitedError):
        _count("RateLimitedRequests")
        headers["Retry-After"] = str(error.retry_after)
        if error.limit is not None:
            headers["X-RateLimit-Limit"] = str(error.limit)
        headers["X-RateLimit-Remaining"] = "0"
    if status == 500:
        _count("InternalErrors")
        return error_response(500, "internal_error", "internal error")
    return error_response(status, error.code, error.message, headers, **extra)


def _request_validation(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = []
    for problem in error.errors():
        location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path", "header")]
        fields.append(
            {
                "field": ".".join(location) or "body",
                "value": displayable(problem.get("input")),
                "message": problem.get("msg", "is invalid"),
            }
        )
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
    return error_response(422, "validation_error", message, fields=fields)


def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return error_response(
        error.status_code,
        codes.get(error.status_code, "http_error"),
        str(error.detail),
        dict(error.headers or {}),
    )


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(AudienceError, _domain_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
