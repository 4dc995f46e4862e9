"""The outbound channel providers against stand-ins of each platform: local HTTP servers that answer as
the WhatsApp Cloud API, Meta's Send API and Telegram's Bot API document, moto for SES, and botocore
answers injected before sending for the errors moto does not produce (and for End User Messaging SMS)."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from audience.providers import ButtonParam, Failed, Outbound, Param, Provider, Sent, Template
from audience.providers.base import retry_after_header
from audience.providers.meta_send import MetaSendApi
from audience.providers.ses import SesEmail
from audience.providers.sms import EndUserMessagingSms
from audience.providers.telegram import TelegramBot
from audience.providers.whatsapp import WhatsAppCloud

TOKEN = "EAAG-test-access-token"
BOT_TOKEN = "123456:ABC-test-bot-token"
PHONE_NUMBER_ID = "106540352242922"
PAGE_ID = "1122334455"
REGION = "eu-west-1"

# -- a platform stand-in ---------------------------------------------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)  # a JSON value, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class PlatformStub:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the queued replies, in order
    (then with an empty 200)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw
                stub.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = stub.replies.pop(0) if stub.replies else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header(
                    "Content-Type", "application/json" if not isinstance(reply.body, bytes) else "text/html"
                )
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="platform-stub", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, status: int = 200, body: Any = None, **options: Any) -> None:
        self.replies.append(Reply(status, {} if body is None else body, **options))

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def platform_stub() -> Iterator[PlatformStub]:
    server = PlatformStub()
    yield server
    server.close()


@pytest.fixture
def stub(platform_stub: PlatformStub) -> PlatformStub:
    platform_stub.reset()
    return platform_stub


def closed_port_url() -> str:
    """An address nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def graph_error(code: int, message: str, *, subcode: int | None = None, details: str = "", **extra: Any) -> dict:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error.update(extra)
    return {"error": error}


def text(channel: str, to: str, body: str = "Hello there", **fields: Any) -> Outbound:
    return Outbound(channel=channel, to=to, kind="text", text=body, idempotency_key=f"key-{to}", **fields)


# -- WhatsApp Cloud API ----------------------------------------------------------------------------------


def whatsapp(url: str, **options: Any) -> WhatsAppCloud:
    return WhatsAppCloud(url, PHONE_NUMBER_ID, TOKEN, **options)


def wa_accepted(wamid: str, to: str = "6281234567890") -> dict:
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid, "message_status": "accepted"}],
    }


def test_whatsapp_text_is_sent_as_the_cloud_api_documents(stub: PlatformStub) -> None:
    stub.reply(200, wa_accepted("wamid.HBgLNjI4MTIzNDU2Nzg5MBUCABEYEjA"))

    result = whatsapp(stub.url).send(text("whatsapp", "6281234567890", "Your order has shipped"))

    assert result == Sent("wamid.HBgLNjI4MTIzNDU2Nzg5MBUCABEYEjA")
    (request,) = stub.requests
    assert request.path == f"/v21.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "6281234567890",
        "type": "text",
        "text": {"body": "Your order has shipped", "preview_url": False},
    }


def test_whatsapp_template_carries_header_body_and_button_parameters(stub: PlatformStub) -> None:
    stub.reply(200, wa_accepted("wamid.template-1", "+14155550123"))
    template = Template(
        name="spring_sale",
        language="en_US",
        header=[Param("https://cdn.example.com/sale.jpg", kind="image")],
        body=[Param("Jessica", name="first_name"), Param("25%")],
        buttons=[ButtonParam(0, "quick_reply", "STOP_PROMOS"), ButtonParam(1, "url", "spring?c=42")],
    )
    message = Outbound(channel="whatsapp", to="+14155550123", kind="template", template=template, idempotency_key="k1")

    result = whatsapp(stub.url, api_version="v22.0").send(message)

    assert result == Sent("wamid.template-1")
    (request,) = stub.requests
    assert request.path == f"/v22.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+14155550123",
        "type": "template",
        "template": {
            "name": "spring_sale",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/sale.jpg"}}],
                },
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Jessica", "parameter_name": "first_name"},
                        {"type": "text", "text": "25%"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "STOP_PROMOS"}],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "1",
                    "parameters": [{"type": "text", "text": "spring?c=42"}],
                },
            ],
        },
    }


def test_whatsapp_template_with_a_text_header_and_no_parameters_elsewhere(stub: PlatformStub) -> None:
    stub.reply(200, wa_accepted("wamid.template-2"))
    template = Template(name="order_update", language="id", header=[Param("ORD-77")])
    message = Outbound(channel="whatsapp", to="6281234567890", kind="template", template=template, idempotency_key="k")

    assert whatsapp(stub.url).send(message) == Sent("wamid.template-2")
    assert stub.requests[0].body["template"] == {
        "name": "order_update",
        "language": {"code": "id"},
        "components": [{"type": "header", "parameters": [{"type": "text", "text": "ORD-77"}]}],
    }


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        pytest.param(
            400,
            graph_error(130429, "(#130429) Rate limit hit", details="Cloud API message throughput has been reached."),
            {},
            Failed(
                "rate_limited",
                "130429",
                "(#130429) Rate limit hit: Cloud API message throughput has been reached.",
                1.0,
            ),
            id="130429-throughput",
        ),
        pytest.param(
            400,
            graph_error(130429, "(#130429) Rate limit hit"),
            {"Retry-After": "7"},
            Failed("rate_limited", "130429", "(#130429) Rate limit hit", 7.0),
            id="130429-retry-after-header",
        ),
        pytest.param(
            400,
            graph_error(131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit", subcode=2494071),
            {},
            Failed("rate_limited", "131056", "(#131056) (Business Account, Consumer Account) pair rate limit hit", 6.0),
            id="131056-pair-rate",
        ),
        pytest.param(
            400,
            graph_error(80007, "(#80007) There have been too many calls to this WhatsApp Business account."),
            {},
            Failed(
                "rate_limited",
                "80007",
                "(#80007) There have been too many calls to this WhatsApp Business account.",
                60.0,
            ),
            id="80007-waba-rate",
        ),
        pytest.param(
            400,
            graph_error(131026, "(#131026) Message undeliverable", details="Unable to deliver message."),
            {},
            Failed("permanent", "131026", "(#131026) Message undeliverable: Unable to deliver message."),
            id="131026-undeliverable",
        ),
        pytest.param(
            400,
            graph_error(131050, "(#131050) User has stopped receipt of marketing messages"),
            {},
            Failed("permanent", "131050", "(#131050) User has stopped receipt of marketing messages"),
            id="131050-marketing-stopped",
        ),
        pytest.param(
            400,
            graph_error(
                131047,
                "(#131047) Re-engagement message",
                details="Message failed to send because more than 24 hours have passed since the customer last "
                "replied to this number.",
            ),
            {},
            Failed(
                "permanent",
                "131047",
                "(#131047) Re-engagement message: Message failed to send because more than 24 hours have passed "
                "since the customer last replied to this number.",
            ),
            id="131047-outside-window",
        ),
        pytest.param(
            404,
            graph_error(132001, "(#132001) Template name does not exist in the translation"),
            {},
            Failed("permanent", "132001", "(#132001) Template name does not exist in the translation"),
            id="132001-template-missing",
        ),
        pytest.param(
            401,
            graph_error(190, "Error validating access token: Session has expired.", subcode=463),
            {},
            Failed("permanent", "190", "Error validating access token: Session has expired."),
            id="190-token",
        ),
        pytest.param(
            500,
            graph_error(131000, "(#131000) Something went wrong"),
            {},
            Failed("retryable", "131000", "(#131000) Something went wrong"),
            id="131000-something-went-wrong",
        ),
        pytest.param(
            503,
            graph_error(131016, "(#131016) Service unavailable", is_transient=True),
            {},
            Failed("retryable", "131016", "(#131016) Service unavailable"),
            id="131016-unavailable",
        ),
        pytest.param(
            400,
            graph_error(999999, "An undocumented transient fault", is_transient=True),
            {},
            Failed("retryable", "999999", "An undocumented transient fault"),
            id="unknown-transient",
        ),
        pytest.param(
            500, b"<html>Internal Server Error</html>", {}, Failed("retryable", "http_500", "HTTP 500"), id="500-html"
        ),
        pytest.param(
            429, b"", {"Retry-After": "3"}, Failed("rate_limited", "http_429", "HTTP 429", 3.0), id="429-no-body"
        ),
    ],
)
def test_whatsapp_errors_are_classified(
    stub: PlatformStub, status: int, body: Any, headers: dict[str, str], expected: Failed
) -> None:
    stub.reply(status, body, headers=headers)

    assert whatsapp(stub.url).send(text("whatsapp", "6281234567890")) == expected


def test_whatsapp_accepted_without_a_message_id_is_not_sent_again(stub: PlatformStub) -> None:
    stub.reply(200, {"messaging_product": "whatsapp", "messages": []})

    result = whatsapp(stub.url).send(text("whatsapp", "6281234567890"))

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("permanent", "unexpected_response")


def test_whatsapp_unreachable_api_is_a_retryable_network_failure() -> None:
    result = whatsapp(closed_port_url(), timeout=2).send(text("whatsapp", "6281234567890"))

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("retryable", "network")
    assert "ConnectError" in result.title
    assert not result.maybe_sent  # refused before the request went out: nothing can have been sent


def test_whatsapp_timeout_is_a_retryable_network_failure(stub: PlatformStub) -> None:
    stub.reply(200, wa_accepted("wamid.late"), delay=0.5)

    result = whatsapp(stub.url, timeout=0.1).send(text("whatsapp", "6281234567890"))

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("retryable", "network")
    assert "Timeout" in result.title
    assert result.maybe_sent  # the platform had the request and may have taken the message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            Outbound(channel="whatsapp", to="1", kind="email", idempotency_key="k", subject="s", html="h"),
            "kind 'email' are not supported",
        ),
        (Outbound(channel="telegram", to="1", kind="text", text="hi", idempotency_key="k"), "not telegram"),
        (Outbound(channel="whatsapp", to="1", kind="text", idempotency_key="k"), "needs text"),
        (Outbound(channel="whatsapp", to="1", kind="template", idempotency_key="k"), "needs a template"),
        (Outbound(channel="whatsapp", to="", kind="text", text="hi", idempotency_key="k"), "no recipient"),
    ],
    ids=["email-kind", "other-channel", "text-without-text", "template-without-template", "no-recipient"],
)
def test_whatsapp_refuses_messages_it_cannot_send(stub: PlatformStub, message: Outbound, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        whatsapp(stub.url).send(message)
    assert stub.requests == []


# -- Messenger / Instagram Send API ----------------------------------------------------------------------


def test_messenger_text_is_a_response_inside_the_window(stub: PlatformStub) -> None:
    stub.reply(200, {"recipient_id": "6789012345", "message_id": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAj"})
    provider: Provider = MetaSendApi(stub.url, PAGE_ID, TOKEN)

    result = provider.send(text("messenger", "6789012345", "Thanks, we are on it"))

    assert result == Sent("m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAj")
    (request,) = stub.requests
    assert request.path == f"/v21.0/{PAGE_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body == {
        "recipient": {"id": "6789012345"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Thanks, we are on it"},
    }


def test_instagram_uses_the_same_send_api_with_the_professional_account(stub: PlatformStub) -> None:
    stub.reply(200, {"recipient_id": "5566778899", "message_id": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx"})
    provider = MetaSendApi(stub.url, "17841400000000000", TOKEN, channel="instagram", api_version="v22.0")

    result = provider.send(text("instagram", "5566778899", "Hi from Instagram"))

    assert result == Sent("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx")
    assert stub.requests[0].path == "/v22.0/17841400000000000/messages"
    assert stub.requests[0].body == {
        "recipient": {"id": "5566778899"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hi from Instagram"},
    }
    with pytest.raises(ValueError, match="not messenger"):
        provider.send(text("messenger", "5566778899"))


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        pytest.param(
            400,
            graph_error(613, "Calls to this api have exceeded the rate limit."),
            {},
            Failed("rate_limited", "613", "Calls to this api have exceeded the rate limit.", 60.0),
            id="613-rate",
        ),
        pytest.param(
            400,
            graph_error(4, "(#4) Application request limit reached"),
            {"Retry-After": "120"},
            Failed("rate_limited", "4", "(#4) Application request limit reached", 120.0),
            id="4-app-rate-retry-after",
        ),
        pytest.param(
            400,
            graph_error(551, "This person isn't available right now.", subcode=1545041),
            {},
            Failed("permanent", "551:1545041", "This person isn't available right now."),
            id="551-person-unavailable",
        ),
        pytest.param(
            400,
            graph_error(10, "(#10) This message is sent outside of allowed window.", subcode=2018278),
            {},
            Failed("permanent", "10:2018278", "(#10) This message is sent outside of allowed window."),
            id="10-outside-window",
        ),
        pytest.param(
            400,
            graph_error(100, "(#100) No matching user found", subcode=2018001),
            {},
            Failed("permanent", "100:2018001", "(#100) No matching user found"),
            id="100-no-user",
        ),
        pytest.param(
            500,
            graph_error(1200, "Temporary send message failure. Please try again later"),
            {},
            Failed("retryable", "1200", "Temporary send message failure. Please try again later"),
            id="1200-temporary",
        ),
        pytest.param(
            500,
            graph_error(2, "An unexpected error has occurred. Please retry your request later.", is_transient=True),
            {},
            Failed("retryable", "2", "An unexpected error has occurred. Please retry your request later."),
            id="2-service",
        ),
        pytest.param(502, b"Bad Gateway", {}, Failed("retryable", "http_502", "HTTP 502"), id="502-html"),
    ],
)
def test_messenger_errors_are_classified(
    stub: PlatformStub, status: int, body: Any, headers: dict[str, str], expected: Failed
) -> None:
    stub.reply(status, body, headers=headers)

    assert MetaSendApi(stub.url, PAGE_ID, TOKEN).send(text("messenger", "6789012345")) == expected


def test_send_api_sends_text_only(stub: PlatformStub) -> None:
    template = Outbound(channel="messenger", to="1", kind="template", template=Template("t", "en"), idempotency_key="k")
    with pytest.raises(ValueError, match="kind 'template' are not supported"):
        MetaSendApi(stub.url, PAGE_ID, TOKEN).send(template)
    with pytest.raises(ValueError, match="not whatsapp"):
        MetaSendApi(stub.url, PAGE_ID, TOKEN, channel="whatsapp")  # type: ignore[arg-type]
    assert stub.requests == []


def test_send_api_unreachable_is_a_retryable_network_failure() -> None:
    result = MetaSendApi(closed_port_url(), PAGE_ID, TOKEN, timeout=2).send(text("messenger", "6789012345"))

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("retryable", "network")


# -- Telegram Bot API ------------------------------------------------------------------------------------


def tg_message(chat_id: int, message_id: int, text_: str) -> dict:
    return {
        "ok": True,
        "result": {
            "message_id": message_id,
            "from": {"id": 123456, "is_bot": True, "first_name": "Acme", "username": "acme_bot"},
            "chat": {"id": chat_id, "first_name": "Budi", "type": "private"},
            "date": 1781000000,
            "text": text_,
        },
    }


def test_telegram_send_message_names_the_message_like_inbound_parsing(stub: PlatformStub) -> None:
    stub.reply(200, tg_message(987654321, 42, "Halo"))

    result = TelegramBot(stub.url, BOT_TOKEN).send(text("telegram", "987654321", "Halo"))

    assert result == Sent("987654321:42")
    (request,) = stub.requests
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert request.body == {"chat_id": 987654321, "text": "Halo"}


def test_telegram_group_chat_ids_are_negative_numbers(stub: PlatformStub) -> None:
    stub.reply(200, tg_message(-1001234567890, 7, "Update"))

    assert TelegramBot(stub.url, BOT_TOKEN).send(text("telegram", "-1001234567890", "Update")) == Sent(
        "-1001234567890:7"
    )
    assert stub.requests[0].body == {"chat_id": -1001234567890, "text": "Update"}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 17",
                "parameters": {"retry_after": 17},
            },
            Failed("rate_limited", "429", "Too Many Requests: retry after 17", 17.0),
            id="429-flood-control",
        ),
        pytest.param(
            403,
            {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
            Failed("permanent", "403", "Forbidden: bot was blocked by the user"),
            id="403-blocked",
        ),
        pytest.param(
            400,
            {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            Failed("permanent", "400", "Bad Request: chat not found"),
            id="400-chat-not-found",
        ),
        pytest.param(
            401,
            {"ok": False, "error_code": 401, "description": "Unauthorized"},
            Failed("permanent", "401", "Unauthorized"),
            id="401-token-revoked",
        ),
        pytest.param(
            500,
            {"ok": False, "error_code": 500, "description": "Internal Server Error"},
            Failed("retryable", "500", "Internal Server Error"),
            id="500",
        ),
        pytest.param(502, b"<html>Bad Gateway</html>", Failed("retryable", "502", "HTTP 502"), id="502-html"),
    ],
)
def test_telegram_errors_are_classified(stub: PlatformStub, status: int, body: Any, expected: Failed) -> None:
    stub.reply(status, body)

    assert TelegramBot(stub.url, BOT_TOKEN).send(text("telegram", "987654321")) == expected


def test_telegram_unreachable_is_a_retryable_network_failure() -> None:
    result = TelegramBot(closed_port_url(), BOT_TOKEN, timeout=2).send(text("telegram", "987654321"))

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("retryable", "network")


def test_telegram_has_no_templates(stub: PlatformStub) -> None:
    message = Outbound(channel="telegram", to="1", kind="template", template=Template("t", "en"), idempotency_key="k")
    with pytest.raises(ValueError, match="kind 'template' are not supported"):
        TelegramBot(stub.url, BOT_TOKEN).send(message)
    assert stub.requests == []


# -- botocore answers, injected ---------------------------------------------------------------------------


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class AwsAnswers:
    """A botocore before-send handler: records each serialized request and answers with the queued
    (status, headers, body) instead of calling AWS."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []

    def answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, headers or {}, body))

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.requests.append(json.loads(request.body))
        status, headers, body = self.answers.pop(0)
        return AWSResponse(
            request.url, status, {"x-amzn-requestid": "req-1", **headers}, _Raw(json.dumps(body).encode())
        )


@functools.cache
def _session() -> boto3.session.Session:
    # One session for the module: each new one loads botocore's service data again (~150 ms a client).
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def aws_client(service: str, **options: Any) -> Any:
    session = _session()
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2)
    return session.client(service, config=config, **options)


def unreachable_client(service: str) -> Any:
    return aws_client(service, endpoint_url=closed_port_url())


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


# -- SES -------------------------------------------------------------------------------------------------

SENDER = "news@mail.example.com"


def email(**fields: Any) -> Outbound:
    values: dict[str, Any] = {
        "channel": "email",
        "to": "budi@example.net",
        "kind": "email",
        "idempotency_key": "cmp-1:budi@example.net",
        "subject": "Spring sale",
        "html": "<p>25% off</p>",
        "text_body": "25% off",
        "from_address": SENDER,
    }
    values.update(fields)
    return Outbound(**values)


@pytest.fixture
def ses(aws_env: None) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """An SES v2 client on moto with a verified sender, and the serialized SendEmail requests it makes."""
    with mock_aws():
        client = aws_client("sesv2")
        sent: list[dict[str, Any]] = []
        client.meta.events.register(
            "request-created.sesv2.SendEmail", lambda request, **_: sent.append(json.loads(request.body))
        )
        client.create_email_identity(EmailIdentity=SENDER)
        yield client, sent


def moto_sent_messages() -> list[Any]:
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def test_marketing_email_carries_one_click_unsubscribe(ses: tuple[Any, list[dict[str, Any]]]) -> None:
    client, sent = ses
    provider = SesEmail("marketing", client_factory=lambda: client)

    result = provider.send(
        email(
            marketing=True,
            unsubscribe_url="https://hooks.example.com/u/abc123",
            reply_to="help@example.com",
            reference="cmp_01J9Z/budi@example.net",
        )
    )

    (delivered,) = moto_sent_messages()
    assert result == Sent(delivered.id)
    assert (delivered.source, delivered.subject, delivered.destinations) == (
        SENDER,
        "Spring sale",
        {"ToAddresses": ["budi@example.net"]},
    )
    assert sent == [
        {
            "FromEmailAddress": SENDER,
            "Destination": {"ToAddresses": ["budi@example.net"]},
            "ReplyToAddresses": ["help@example.com"],
            "Content": {
                "Simple": {
                    "Subject": {"Data": "Spring sale", "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": "<p>25% off</p>", "Charset": "UTF-8"},
                        "Text": {"Data": "25% off", "Charset": "UTF-8"},
                    },
                    "Headers": [
                        {"Name": "List-Unsubscribe", "Value": "<https://hooks.example.com/u/abc123>"},
                        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                    ],
                }
            },
            "EmailTags": [{"Name": "reference", "Value": "cmp_01J9Z_budi_example_net"}],
            "ConfigurationSetName": "marketing",
        }
    ]


def test_transactional_email_has_no_unsubscribe_headers(ses: tuple[Any, list[dict[str, Any]]]) -> None:
    client, sent = ses

    result = SesEmail(None, client_factory=lambda: client).send(
        email(subject="Your receipt", html=None, unsubscribe_url="https://hooks.example.com/u/abc123")
    )

    assert isinstance(result, Sent)
    (request,) = sent
    assert request["Content"]["Simple"] == {
        "Subject": {"Data": "Your receipt", "Charset": "UTF-8"},
        "Body": {"Text": {"Data": "25% off", "Charset": "UTF-8"}},
    }
    assert "ConfigurationSetName" not in request
    assert "EmailTags" not in request


@pytest.mark.parametrize("url", [None, "", "http://hooks.example.com/u/abc123", "mailto:unsub@example.com", "https://"])
def test_marketing_email_without_an_https_unsubscribe_url_is_refused(
    ses: tuple[Any, list[dict[str, Any]]], url: str | None
) -> None:
    client, sent = ses

    with pytest.raises(ValueError, match="unsubscribe"):
        SesEmail(None, client_factory=lambda: client).send(email(marketing=True, unsubscribe_url=url))
    assert sent == []
    assert moto_sent_messages() == []


def test_unverified_sender_is_a_permanent_rejection(ses: tuple[Any, list[dict[str, Any]]]) -> None:
    client, _ = ses

    result = SesEmail(None, client_factory=lambda: client).send(email(from_address="someone@unverified.example"))

    assert result == Failed(
        "permanent", "MessageRejected", "MessageRejected: Email address not verified someone@unverified.example"
    )


@pytest.mark.parametrize(
    ("status", "error", "message", "expected"),
    [
        ("429", "TooManyRequestsException", "Maximum sending rate exceeded.", ("rate_limited", 1.0)),
        ("400", "LimitExceededException", "Daily message quota exceeded.", ("rate_limited", 600.0)),
        ("400", "AccountSuspendedException", "Sending is suspended for this account.", ("permanent", None)),
        ("400", "SendingPausedException", "Sending is paused for this account.", ("permanent", None)),
        ("400", "MailFromDomainNotVerifiedException", "MAIL FROM domain is not verified.", ("permanent", None)),
        ("404", "NotFoundException", "Configuration set <marketing> does not exist.", ("permanent", None)),
        ("400", "BadRequestException", "Invalid header value.", ("permanent", None)),
        ("500", "InternalFailure", "We encountered an internal error.", ("retryable", None)),
        ("503", "ServiceUnavailable", "Service is unavailable.", ("retryable", None)),
    ],
)
def test_ses_errors_are_classified(
    aws_env: None, status: str, error: str, message: str, expected: tuple[str, float | None]
) -> None:
    client = aws_client("sesv2")
    answers = AwsAnswers()
    answers.answer(int(status), {"message": message}, {"x-amzn-errortype": f"{error}:http://internal.amazon.com/"})
    client.meta.events.register("before-send.sesv2.SendEmail", answers)

    result = SesEmail("marketing", client_factory=lambda: client).send(email())

    assert result == Failed(expected[0], error, f"{error}: {message}", expected[1])  # type: ignore[arg-type]
    assert answers.requests[0]["FromEmailAddress"] == SENDER


def test_ses_unreachable_is_a_retryable_network_failure(aws_env: None) -> None:
    result = SesEmail(None, client_factory=lambda: unreachable_client("sesv2")).send(email())

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("retryable", "network")
    assert "EndpointConnectionError" in result.title


def test_ses_sends_email_only(aws_env: None) -> None:
    provider = SesEmail(None, client_factory=lambda: pytest.fail("no client is needed to refuse"))
    with pytest.raises(ValueError, match="kind 'text' are not supported"):
        provider.send(text("email", "budi@example.net"))
    with pytest.raises(ValueError, match="needs a from_address"):
        provider.send(email(from_address=None))
    with pytest.raises(ValueError, match="needs an html or a text body"):
        provider.send(email(html=None, text_body=None))


# -- End User Messaging SMS ------------------------------------------------------------------------------


def sms_client(answers: AwsAnswers) -> Any:
    client = aws_client("pinpoint-sms-voice-v2")
    client.meta.events.register("before-send.pinpoint-sms-voice-v2.SendTextMessage", answers)
    return client


def sms_error(error: str, message: str, **members: Any) -> dict[str, Any]:
    return {"__type": f"com.amazonaws.pinpointsmsvoicev2#{error}", "Message": message, **members}


def test_sms_is_sent_with_the_origination_identity_and_reference(aws_env: None) -> None:
    answers = AwsAnswers()
    answers.answer(200, {"MessageId": "0f3a6c2e-8d1b-4b5e-9a77-2c1d5e6f7a8b"})
    provider = EndUserMessagingSms(
        "+18445550100", configuration_set="sms-events", client_factory=lambda: sms_client(answers)
    )

    result = provider.send(text("sms", "+6281234567890", "Your code is 123456", reference="otp_01J9Z"))

    assert result == Sent("0f3a6c2e-8d1b-4b5e-9a77-2c1d5e6f7a8b")
    assert answers.requests == [
        {
            "DestinationPhoneNumber": "+6281234567890",
            "OriginationIdentity": "+18445550100",
            "MessageBody": "Your code is 123456",
            "MessageType": "TRANSACTIONAL",
            "ConfigurationSetName": "sms-events",
            "Context": {"reference": "otp_01J9Z"},
        }
    ]


def test_promotional_sms_without_reference_or_configuration_set(aws_env: None) -> None:
    answers = AwsAnswers()
    answers.answer(200, {"MessageId": "m-2"})
    provider = EndUserMessagingSms("pool-abc", message_type="PROMOTIONAL", client_factory=lambda: sms_client(answers))

    assert provider.send(text("sms", "+14155550123", "Sale today")) == Sent("m-2")
    assert answers.requests == [
        {
            "DestinationPhoneNumber": "+14155550123",
            "OriginationIdentity": "pool-abc",
            "MessageBody": "Sale today",
            "MessageType": "PROMOTIONAL",
        }
    ]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            400,
            sms_error("ThrottlingException", "Rate exceeded."),
            Failed("rate_limited", "ThrottlingException", "ThrottlingException: Rate exceeded.", 1.0),
            id="throttled",
        ),
        pytest.param(
            400,
            sms_error(
                "ConflictException",
                "The destination phone number is opted out.",
                Reason="DESTINATION_PHONE_NUMBER_OPTED_OUT",
                ResourceType="opted-out-number",
                ResourceId="+6281234567890",
            ),
            Failed(
                "permanent",
                "DESTINATION_PHONE_NUMBER_OPTED_OUT",
                "ConflictException: The destination phone number is opted out.",
            ),
            id="opted-out",
        ),
        pytest.param(
            400,
            sms_error("ValidationException", "Destination country is blocked.", Reason="DESTINATION_COUNTRY_BLOCKED"),
            Failed("permanent", "DESTINATION_COUNTRY_BLOCKED", "ValidationException: Destination country is blocked."),
            id="validation",
        ),
        pytest.param(
            400,
            sms_error("AccessDeniedException", "Account is disabled.", Reason="ACCOUNT_DISABLED"),
            Failed("permanent", "ACCOUNT_DISABLED", "AccessDeniedException: Account is disabled."),
            id="access-denied",
        ),
        pytest.param(
            400,
            sms_error(
                "ResourceNotFoundException", "Phone number not found.", ResourceType="phone-number", ResourceId="x"
            ),
            Failed("permanent", "ResourceNotFoundException", "ResourceNotFoundException: Phone number not found."),
            id="not-found",
        ),
        pytest.param(
            400,
            sms_error(
                "ServiceQuotaExceededException",
                "Monthly spend limit reached.",
                Reason="MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT",
            ),
            Failed(
                "permanent",
                "MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT",
                "ServiceQuotaExceededException: Monthly spend limit reached.",
            ),
            id="spend-limit",
        ),
        pytest.param(
            500,
            sms_error("InternalServerException", "Internal error.", RequestId="r-1"),
            Failed("retryable", "InternalServerException", "InternalServerException: Internal error."),
            id="internal",
        ),
    ],
)
def test_sms_errors_are_classified(aws_env: None, status: int, body: dict[str, Any], expected: Failed) -> None:
    answers = AwsAnswers()
    answers.answer(status, body)

    result = EndUserMessagingSms("+18445550100", client_factory=lambda: sms_client(answers)).send(
        text("sms", "+6281234567890")
    )

    assert result == expected


def test_sms_unreachable_is_a_retryable_network_failure(aws_env: None) -> None:
    provider = EndUserMessagingSms("+18445550100", client_factory=lambda: unreachable_client("pinpoint-sms-voice-v2"))

    result = provider.send(text("sms", "+6281234567890"))

    assert isinstance(result, Failed)
    assert (result.kind, result.code) == ("retryable", "network")


def test_sms_sends_text_only(aws_env: None) -> None:
    provider = EndUserMessagingSms("+18445550100", client_factory=lambda: pytest.fail("no client is needed"))
    with pytest.raises(ValueError, match="not email"):
        provider.send(email())
    with pytest.raises(ValueError, match="not whatsapp"):
        provider.send(text("whatsapp", "+6281234567890"))
    with pytest.raises(ValueError, match="TRANSACTIONAL or PROMOTIONAL"):
        EndUserMessagingSms("+18445550100", message_type="MARKETING")  # type: ignore[arg-type]


# -- shared pieces ---------------------------------------------------------------------------------------


def test_retry_after_header_reads_seconds_and_http_dates() -> None:
    assert retry_after_header("30") == 30.0
    assert retry_after_header("1.5") == 1.5
    assert retry_after_header(None) is None
    assert retry_after_header("soon") is None
    assert retry_after_header("Wed, 21 Oct 2026 07:28:00 GMT", now=1792567660.0) == 20.0
    assert retry_after_header("Wed, 21 Oct 2026 07:28:00 GMT", now=1792567700.0) == 0.0
