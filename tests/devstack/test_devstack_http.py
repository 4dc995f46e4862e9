"""The ASGI app standing in for API Gateway: routing, the 2.0 and 1.0 events, and response translation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from devstack import LocalStack


def _request(stack: LocalStack, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=stack.http_app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.local:3000") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(send())


def test_v2_event_carries_path_query_headers_and_cookies(shared_stack: LocalStack) -> None:
    response = _request(
        shared_stack,
        "GET",
        "/items/abc%20d?x=1&x=2&empty=",
        headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Cookie", "s=1; t=2"), ("User-Agent", "tests")],
    )

    assert response.status_code == 200
    assert response.headers["x-route"] == "GET /items/{id}"
    assert response.headers.get_list("set-cookie") == ["session=abc; Path=/; HttpOnly", "theme=dark"]
    payload = response.json()
    event = payload["event"]
    assert payload["function"] == "devstack-HttpFunction"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/abc%20d"
    assert event["rawQueryString"] == "x=1&x=2&empty="
    assert event["pathParameters"] == {"id": "abc d"}
    assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
    assert event["headers"]["x-multi"] == "a,b"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/items/abc%20d",
        "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.7",
        "userAgent": "tests",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /items/{id}"
    assert context["apiId"] == shared_stack.resources["FixtureApi"]
    assert context["accountId"] == "123456789012"
    assert context["domainName"] == "api.local:3000"
    assert isinstance(context["timeEpoch"], int)
    assert context["requestId"]


def test_most_specific_route_wins_and_proxy_takes_the_rest(shared_stack: LocalStack) -> None:
    blob = _request(shared_stack, "POST", "/items/abc/blob", content=b"x", headers={"content-type": "text/plain"})
    other_method = _request(shared_stack, "POST", "/items/abc", json={"a": 1})
    deep = _request(shared_stack, "DELETE", "/some/deep/path")

    assert blob.content == b"x"
    assert other_method.headers["x-route"] == "ANY /{proxy+}"
    event = other_method.json()["event"]
    assert event["pathParameters"] == {"proxy": "items/abc"}
    assert json.loads(event["body"]) == {"a": 1}
    assert event["isBase64Encoded"] is False
    assert deep.json()["event"]["pathParameters"] == {"proxy": "some/deep/path"}


def test_binary_bodies_travel_base64_both_ways(shared_stack: LocalStack) -> None:
    body = bytes(range(256))

    response = _request(
        shared_stack, "POST", "/items/abc/blob", content=body, headers={"content-type": "application/octet-stream"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == body[::-1]


def test_status_codes_plain_results_errors_and_no_route(shared_stack: LocalStack) -> None:
    teapot = _request(shared_stack, "GET", "/status/418")
    plain = _request(shared_stack, "GET", "/plain")
    boom = _request(shared_stack, "GET", "/boom")
    root = _request(shared_stack, "GET", "/")  # /{proxy+} needs at least one segment, as on API Gateway

    assert teapot.status_code == 418
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == {"plain": True}
    assert boom.status_code == 500
    assert boom.json() == {"message": "Internal Server Error"}
    assert root.status_code == 404
    assert root.json() == {"message": "Not Found"}


def test_bodies_over_ten_megabytes_are_refused(shared_stack: LocalStack) -> None:
    response = _request(shared_stack, "POST", "/anything", content=b"x" * (10 * 1024 * 1024 + 1))

    assert response.status_code == 413


def test_api_events_get_the_rest_api_payload(shared_stack: LocalStack) -> None:
    response = _request(shared_stack, "GET", "/legacy/bob?tag=a&tag=b")

    assert response.status_code == 200
    assert response.headers.get_list("x-values") == ["one", "two"]
    event = response.json()
    assert event["httpMethod"] == "GET"
    assert event["resource"] == "/legacy/{name}"
    assert event["pathParameters"] == {"name": "bob"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["requestContext"]["apiId"] == shared_stack.resources["ServerlessRestApi"]
