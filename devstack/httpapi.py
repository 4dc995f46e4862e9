"""An ASGI app that plays API Gateway for the template's HttpApi/Api events ($default stage)."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio.to_thread

from devstack.functions import LocalFunction
from devstack.template import ACCOUNT_ID, HttpRoute

log = logging.getLogger("devstack")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's HTTP API request payload limit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded")


class PayloadTooLargeError(Exception):
    """The request body is over the HTTP API limit."""


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    segments: tuple[str, ...]  # empty for $default
    rank: tuple[Any, ...]

    @property
    def route_key(self) -> str:
        return "$default" if self.route.path is None else f"{self.route.method} {self.route.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route takes the request, else None."""
        if self.route.method not in ("ANY", method):
            return None
        if self.route.path is None:
            return {}
        parts = path.lstrip("/").split("/")
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = "/".join(parts[index:])
                if not rest:
                    return None
                params[segment[1:-2]] = rest
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                if not parts[index]:
                    return None
                params[segment[1:-1]] = unquote(parts[index])
            elif segment != parts[index]:
                return None
        return params if len(parts) == len(self.segments) else None


def _compile(route: HttpRoute) -> _CompiledRoute:
    if route.path is None:
        return _CompiledRoute(route, (), ((-1,), 0, False))
    segments = tuple(route.path.lstrip("/").split("/"))
    # Most specific first, as API Gateway picks: literal segments beat {param}, which beat {greedy+};
    # then longer paths; then a named method beats ANY.
    scores = tuple(0 if s.endswith("+}") else 1 if s.startswith("{") else 2 for s in segments)
    return _CompiledRoute(route, segments, (scores, len(segments), route.method != "ANY"))


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+json", "+xml"))


def _json_response(status: int, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps({"message": message}).encode()


class HttpApi:
    """Routes requests to the functions whose HttpApi (payload 2.0) or Api (payload 1.0) events match."""

    def __init__(self, functions: dict[str, LocalFunction], api_ids: dict[str, str] | None = None) -> None:
        self._functions = functions
        self._api_ids = api_ids or {}
        self._routes: list[_CompiledRoute] = []

    def set_routes(self, routes: list[HttpRoute]) -> None:
        """Replace the routing table (the stack calls this when it provisions)."""
        compiled = [_compile(route) for route in routes]
        self._routes = sorted(compiled, key=lambda r: r.rank, reverse=True)

    @property
    def routes(self) -> list[str]:
        """Route keys in matching order, e.g. "GET /orgs/{org_id}"."""
        return [f"{r.route_key} -> {r.route.function_id}" for r in self._routes]

    def find(self, method: str, path: str) -> tuple[_CompiledRoute, dict[str, str]] | None:
        """The route that takes this request, with its path parameters."""
        for route in self._routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            body = await self._read_body(scope, receive)
        except PayloadTooLargeError:
            await self._send(send, *_json_response(413, "Request Entity Too Large"))
            return
        method = scope["method"].upper()
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
        found = self.find(method, raw_path)
        if found is None:
            await self._send(send, *_json_response(404, "Not Found"))
            return
        route, params = found
        function = self._functions[route.route.function_id]
        if route.route.payload_version == "1.0":
            event = self._event_v1(scope, route, params, raw_path, body)
        else:
            event = self._event_v2(scope, route, params, raw_path, body)
        rest = route.route.payload_version == "1.0"
        try:
            result = await anyio.to_thread.run_sync(function.invoke, event)
        except Exception as error:
            log.error("%s raised %s: %s", function.spec.logical_id, type(error).__name__, error, exc_info=True)
            # The two API flavours word a failed integration differently.
            failure = (
                _json_response(502, "Internal server error") if rest else _json_response(500, "Internal Server Error")
            )
            await self._send(send, *failure)
            return
        try:
            response = self._response_v1(result) if rest else self._response_v2(result)
        except (TypeError, ValueError) as error:
            log.error("%s returned a malformed response: %s", function.spec.logical_id, error)
            response = (
                _json_response(502, "Internal server error") if rest else _json_response(500, "Internal Server Error")
            )
        await self._send(send, *response)

    # -- plumbing --------------------------------------------------------------

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _read_body(scope: Scope, receive: Receive) -> bytes:
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length" and value.isdigit() and int(value) > MAX_PAYLOAD_BYTES:
                raise PayloadTooLargeError
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_PAYLOAD_BYTES:
                raise PayloadTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- events ----------------------------------------------------------------

    def _common(self, scope: Scope, body: bytes) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            multi.setdefault(name, []).append(value)
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        client = scope.get("client") or ("127.0.0.1", 0)
        scheme = scope.get("scheme", "http")
        server_host, server_port = scope.get("server") or ("localhost", None)
        server_port = server_port or (443 if scheme == "https" else 80)
        headers.setdefault("x-forwarded-for", client[0])
        headers.setdefault("x-forwarded-proto", scheme)
        headers.setdefault("x-forwarded-port", str(server_port))
        query = scope.get("query_string", b"").decode("latin-1")
        content_type = headers.get("content-type", "")
        is_text = not body or _is_text(content_type)
        if is_text:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                is_text = False
        return {
            "headers": headers,
            "multi_headers": multi,
            "query": query,
            "pairs": parse_qsl(query, keep_blank_values=True),
            "body": text if is_text else base64.b64encode(body).decode(),
            "has_body": bool(body),
            "is_base64": not is_text,
            "source_ip": client[0],
            "host": headers.get("host", server_host),
            "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
            "now": time.time(),
            "request_id": base64.b64encode(secrets.token_bytes(12)).decode().rstrip("="),
        }

    def _api_id(self, route: _CompiledRoute) -> str:
        return self._api_ids.get(route.route.api_id, route.route.api_id)

    def _event_v2(
        self, scope: Scope, route: _CompiledRoute, params: dict[str, str], raw_path: str, body: bytes
    ) -> dict[str, Any]:
        common = self._common(scope, body)
        headers = dict(common["headers"])
        # HTTP API moves cookies out of the headers into their own list.
        headers.pop("cookie", None)
        cookies = [
            c.strip() for value in common["multi_headers"].get("cookie", []) for c in value.split(";") if c.strip()
        ]
        query: dict[str, str] = {}
        for key, value in common["pairs"]:
            query[key] = f"{query[key]},{value}" if key in query else value
        now = common["now"]
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": common["query"],
            "headers": headers,
            "requestContext": {
                "accountId": os.environ.get("AWS_ACCOUNT_ID", ACCOUNT_ID),
                "apiId": self._api_id(route),
                "domainName": common["host"],
                "domainPrefix": common["host"].split(".", 1)[0],
                "http": {
                    "method": scope["method"].upper(),
                    "path": raw_path,
                    "protocol": common["protocol"],
                    "sourceIp": common["source_ip"],
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": common["request_id"],
                "routeKey": route.route_key,
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": common["is_base64"],
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if common["has_body"]:
            event["body"] = common["body"]
        return event

    def _event_v1(
        self, scope: Scope, route: _CompiledRoute, params: dict[str, str], raw_path: str, body: bytes
    ) -> dict[str, Any]:
        common = self._common(scope, body)
        multi_query: dict[str, list[str]] = {}
        for key, value in common["pairs"]:
            multi_query.setdefault(key, []).append(value)
        now = common["now"]
        headers = {name: values[-1] for name, values in common["multi_headers"].items()}
        return {
            "version": "1.0",
            "resource": route.route.path or "/{proxy+}",
            "path": unquote(raw_path),
            "httpMethod": scope["method"].upper(),
            "headers": headers or None,
            "multiValueHeaders": common["multi_headers"] or None,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": os.environ.get("AWS_ACCOUNT_ID", ACCOUNT_ID),
                "apiId": self._api_id(route),
                "domainName": common["host"],
                "httpMethod": scope["method"].upper(),
                "identity": {"sourceIp": common["source_ip"], "userAgent": headers.get("user-agent", "")},
                "path": unquote(raw_path),
                "protocol": common["protocol"],
                "requestId": common["request_id"],
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "resourcePath": route.route.path or "/{proxy+}",
                "stage": "$default",
            },
            "body": common["body"] if common["has_body"] else None,
            "isBase64Encoded": common["is_base64"],
        }

    # -- responses -----------------------------------------------------------

    @staticmethod
    def _body(result: dict[str, Any]) -> bytes:
        body = result.get("body")
        if body is None:
            return b""
        if not isinstance(body, str):
            body = json.dumps(body)
        return base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()

    def _response_v2(self, result: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if not (isinstance(result, dict) and "statusCode" in result):
            # HTTP API reads anything without a statusCode as a 200 JSON body.
            return 200, [(b"content-type", b"application/json")], json.dumps(result).encode()
        headers = [(str(k).lower().encode(), str(v).encode()) for k, v in (result.get("headers") or {}).items()]
        headers += [(b"set-cookie", str(cookie).encode()) for cookie in result.get("cookies") or []]
        return int(result["statusCode"]), headers, self._body(result)

    def _response_v1(self, result: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if not (isinstance(result, dict) and "statusCode" in result):
            raise ValueError("a REST API (payload 1.0) response needs a statusCode")
        single = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        headers = []
        for name, values in (result.get("multiValueHeaders") or {}).items():
            single.pop(str(name).lower(), None)
            headers += [(str(name).lower().encode(), str(v).encode()) for v in values]
        headers += [(k.encode(), v.encode()) for k, v in single.items()]
        return int(result["statusCode"]), headers, self._body(result)
