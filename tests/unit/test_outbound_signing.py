"""Signatures of outbound webhooks as a receiver checks them, and the URLs and addresses deliveries may use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from audience.errors import ValidationError
from audience.outbound.addresses import BlockedAddressError, check_url, resolve_public
from audience.outbound.http import WebhookPoster
from audience.outbound.signing import sign, verify

SECRET = "whsec_0123456789abcdefghjkmnpqrstvwxyz0123"
BODY = b'{"id":"ev_1","type":"contact.created","version":1,"org_id":"org_1","occurred_at":"x","data":{}}'
NOW = 1_800_000_000


def test_a_good_signature_verifies() -> None:
    header = sign(SECRET, BODY, NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert verify(SECRET, header, BODY, now=NOW + 10)


def test_a_tampered_body_fails() -> None:
    header = sign(SECRET, BODY, NOW)
    assert not verify(SECRET, header, BODY.replace(b"contact.created", b"contact.deleted"), now=NOW)


def test_the_wrong_secret_fails() -> None:
    assert not verify("whsec_other", sign(SECRET, BODY, NOW), BODY, now=NOW)


def test_an_old_or_future_timestamp_fails() -> None:
    header = sign(SECRET, BODY, NOW)
    assert not verify(SECRET, header, BODY, tolerance=300, now=NOW + 301)
    assert not verify(SECRET, header, BODY, tolerance=300, now=NOW - 301)
    assert verify(SECRET, header, BODY, tolerance=300, now=NOW + 300)


def test_a_changed_timestamp_or_a_malformed_header_fails() -> None:
    header = sign(SECRET, BODY, NOW)
    assert not verify(SECRET, header.replace(f"t={NOW}", f"t={NOW + 1}"), BODY, now=NOW)
    for bad in ("", "v1=abc", f"t={NOW}", "t=soon,v1=abc", "garbage"):
        assert not verify(SECRET, bad, BODY, now=NOW)


def test_any_of_several_v1_signatures_may_match() -> None:
    header = sign(SECRET, BODY, NOW) + ",v1=" + "0" * 64
    assert verify(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://192.168.1.10/x",
        "https://[fd00::1]/x",
        "https://metadata.google.internal/x",
        "https://intranet/x",
        "https://hooks.example.com:99999/x",
    ],
)
def test_urls_refused_in_production(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_url(url, allow_private=False)
    assert refused.value.fields[0]["field"] == "url"


def test_local_urls_are_allowed_when_the_setting_allows_them() -> None:
    assert check_url("http://127.0.0.1:8080/hooks", allow_private=True) == "http://127.0.0.1:8080/hooks"
    assert check_url("https://hooks.example.com/in?x=1", allow_private=False) == "https://hooks.example.com/in?x=1"


def test_a_host_that_resolves_to_a_private_address_is_blocked_at_delivery_time() -> None:
    with pytest.raises(BlockedAddressError):
        resolve_public("localhost", 443)
    with pytest.raises(BlockedAddressError):
        resolve_public("10.0.0.8", 443)
    assert resolve_public("93.184.215.14", 443) == "93.184.215.14"
    result = WebhookPoster(allow_private=False).post("https://localhost:1/hooks", b"{}", {})
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("blocked")
    assert not result.delivered


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://bücher.de/hook", "https://xn--bcher-kva.de/hook"),
        ("https://Hooks.Example.com.:8443/x?y=1", "https://hooks.example.com:8443/x?y=1"),
        ("https://[64:ff9b::5db8:d70e]/x", "https://[64:ff9b::5db8:d70e]/x"),  # NAT64 of a public address
    ],
)
def test_host_names_are_stored_as_ascii_without_a_trailing_dot(url: str, stored: str) -> None:
    assert check_url(url, allow_private=False) == stored


@pytest.mark.parametrize(
    "url",
    [
        "https://a..com/",
        "https://" + "a" * 64 + ".com/",
        "https://exa mple.com/",
        "https://localhost./x",
        "https://127.0.0.1./x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://[64:ff9b::a00:1]/x",
        "https://[64:ff9b::7f00:1]/x",
        "https://[::127.0.0.1]/x",
        "https://[2002:a00:1::]/x",
    ],
)
def test_invalid_names_and_ipv6_forms_of_private_ipv4_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_url(url, allow_private=False)
    assert refused.value.fields[0]["field"] == "url"


@pytest.mark.parametrize("host", ["::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "localhost.", "a..com", "bücher..de"])
def test_delivery_time_checks_judge_embedded_ipv4_and_refuse_bad_names(host: str) -> None:
    with pytest.raises(BlockedAddressError):
        resolve_public(host, 443)


@pytest.mark.parametrize("url", ["https://a..com/", "https://" + "a" * 64 + ".com/x", "https://bü..de/x"])
def test_a_host_name_that_cannot_be_encoded_is_a_failed_attempt_not_a_crash(url: str) -> None:
    result = WebhookPoster(allow_private=False).post(url, b"{}", {})
    assert result.status_code is None
    assert result.error


def test_any_exception_while_posting_is_a_failed_attempt() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise UnicodeEncodeError("idna", "x", 0, 1, "label too long")

    result = WebhookPoster(allow_private=True, transport=httpx.MockTransport(explode)).post("http://x.test/", b"{}", {})
    assert result.status_code is None
    assert result.error is not None
    assert "UnicodeEncodeError" in result.error


class _Server:
    """A local HTTP/1.1 server whose handler is `behaviour(handler)`; records the client port of each request."""

    def __init__(self, behaviour: Callable[[BaseHTTPRequestHandler], None]) -> None:
        ports = self.ports = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                ports.append(self.client_address[1])
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                behaviour(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ok(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(204)
    handler.end_headers()


def test_no_connection_is_reused_between_attempts() -> None:
    server = _Server(_ok)
    try:
        poster = WebhookPoster(allow_private=True)
        assert poster.post(server.url, b"{}", {}).status_code == 204
        assert poster.post(server.url, b"{}", {}).status_code == 204
        assert len(set(server.ports)) == 2  # a connection checked for one host is never used for another
    finally:
        server.close()


def test_an_answer_that_never_comes_is_cut_at_the_total_deadline() -> None:
    def drip(handler: BaseHTTPRequestHandler) -> None:  # each byte well inside the per-read timeout
        for byte in b"HTTP/1.1 200 OK\r\n":
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.3)

    server = _Server(drip)
    try:
        started = time.monotonic()
        result = WebhookPoster(allow_private=True, timeout=5, deadline=1.0).post(server.url, b"{}", {})
        assert time.monotonic() - started < 2.5
        assert result.status_code is None
        assert result.error is not None
        assert result.error.startswith("timeout")
    finally:
        server.close()


def test_only_the_start_of_a_large_answer_is_read() -> None:
    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(100_000_000))
        handler.end_headers()
        handler.wfile.write(b"x" * 16384)
        handler.wfile.flush()
        time.sleep(5)  # the rest never comes

    server = _Server(endless)
    try:
        started = time.monotonic()
        result = WebhookPoster(allow_private=True, timeout=4, deadline=4.5).post(server.url, b"{}", {})
        assert result.status_code == 200
        assert time.monotonic() - started < 2
    finally:
        server.close()


@pytest.mark.parametrize(
    "header",
    [
        f"t={NOW},v1=" + "é" * 64,  # non-ASCII: compare_digest would raise TypeError
        f"t={NOW},v1=" + "é",
        "t=" + "9" * 5000 + ",v1=" + "0" * 64,  # int() of it raises ValueError (and is no time)
        "t=١٢٣,v1=" + "0" * 64,  # non-ASCII digits
        f"t={NOW},v1=" + "G" * 64,
    ],
)
def test_hostile_headers_are_refused_without_raising(header: str) -> None:
    assert verify(SECRET, header, BODY, now=NOW) is False


def test_a_good_signature_next_to_junk_values_still_verifies() -> None:
    header = sign(SECRET, BODY, NOW) + ",v1=é,v1=" + "z" * 64
    assert verify(SECRET, header, BODY, now=NOW)


def test_the_docs_verify_matches_the_library() -> None:
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[2] / "docs" / "outbound-webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    docs_verify = namespace["verify"]
    now = int(time.time())
    assert docs_verify(SECRET, sign(SECRET, BODY, now), BODY)
    for header in (f"t={now},v1=" + "é" * 64, "t=" + "9" * 5000 + ",v1=" + "0" * 64):
        assert docs_verify(SECRET, header, BODY) is False


def test_a_stored_unicode_or_trailing_dot_host_is_sent_as_its_ascii_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import audience.outbound.http as outbound_http

    seen: dict[str, Any] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.update(host=request.headers["host"], url=str(request.url), sni=request.extensions.get("sni_hostname"))
        return httpx.Response(204)

    monkeypatch.setattr(outbound_http, "resolve_public", lambda host, port: "93.184.215.14")
    poster = WebhookPoster(allow_private=False, transport=httpx.MockTransport(answer))
    assert poster.post("https://bücher.de.:8443/hook", b"{}", {}).status_code == 204
    assert seen == {
        "host": "xn--bcher-kva.de:8443",
        "url": "https://93.184.215.14:8443/hook",
        "sni": "xn--bcher-kva.de",
    }
