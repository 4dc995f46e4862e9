"""Email through Amazon SES API v2 SendEmail, with Simple content (SES assembles the MIME message).

Marketing email carries one-click unsubscribe (RFC 8058): `List-Unsubscribe: <https://...>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, which mailbox providers require of bulk senders; a
marketing email without an https unsubscribe URL is refused before it is sent. Transactional email goes
without them. The reference travels as the `reference` email tag, so SES event records (bounces,
complaints, deliveries) published through the configuration set carry it. SendEmail has no idempotency
key.

Errors (the SendEmail operation's own, botocore's service model, and the SES guide's sending-quota page):
TooManyRequestsException, Throttling/ThrottlingException ("Maximum sending rate exceeded", "Daily message
quota exceeded"; AWS advises waiting up to 10 minutes for the daily quota) and LimitExceededException →
rate limited; MessageRejected, AccountSuspendedException, SendingPausedException,
MailFromDomainNotVerifiedException, NotFoundException, BadRequestException and other 4xx → permanent;
InternalFailure, ServiceUnavailable, other 5xx and transport faults → retryable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from audience.providers._aws import LazyClient, aws_error, network_errors
from audience.providers.base import Failed, Outbound, Result, Sent, network_failure, require, title

RATE_LIMITED: frozenset[str] = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
)
PERMANENT: frozenset[str] = frozenset(
    {
        "MessageRejected",
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "BadRequestException",
        "AccessDeniedException",
    }
)
RETRYABLE: frozenset[str] = frozenset({"InternalFailure", "InternalServiceError", "ServiceUnavailable"})

_SENDING_RATE_WAIT = 1.0
_DAILY_QUOTA_WAIT = 600.0
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_-]")


def _default_client() -> Any:
    from audience import aws

    return aws.client("sesv2")


def tag_value(value: str) -> str:
    """`value` as an SES message tag value: ASCII letters, digits, "_" and "-", at most 256 characters."""
    return _TAG_VALUE.sub("_", value)[:256]


def unsubscribe_headers(url: str) -> list[dict[str, str]]:
    return [
        {"Name": "List-Unsubscribe", "Value": f"<{url}>"},
        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
    ]


def classify(error: Any) -> Failed:
    """The typed failure of a botocore ClientError from SendEmail."""
    parts = aws_error(error)
    text = title(f"{parts.code}: {parts.message}" if parts.message else parts.code)
    if parts.code in RATE_LIMITED or parts.status == 429:
        wait = _DAILY_QUOTA_WAIT if "daily" in parts.message.lower() else _SENDING_RATE_WAIT
        return Failed("rate_limited", parts.code, text, wait)
    if parts.code in PERMANENT:
        return Failed("permanent", parts.code, text)
    if parts.code in RETRYABLE or parts.status >= 500 or parts.status == 0:
        return Failed("retryable", parts.code, text)
    return Failed("permanent", parts.code, text)


class SesEmail:
    """Sends email through SES, in the account and region of the client, with an optional configuration
    set (event publishing, dedicated IPs, suppression)."""

    def __init__(self, configuration_set: str | None, *, client_factory: Callable[[], Any] = _default_client) -> None:
        self._configuration_set = configuration_set
        self._client = LazyClient(client_factory)

    def request(self, message: Outbound) -> dict[str, Any]:
        """The SendEmail parameters for `message` (ValueError if it is not a sendable email)."""
        require(message, ("email",), ("email",))
        if not message.from_address:
            raise ValueError("an email needs a from_address")
        if not message.subject:
            raise ValueError("an email needs a subject")
        if not message.html and not message.text_body:
            raise ValueError("an email needs an html or a text body")
        body: dict[str, Any] = {}
        if message.html:
            body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
        if message.text_body:
            body["Text"] = {"Data": message.text_body, "Charset": "UTF-8"}
        simple: dict[str, Any] = {"Subject": {"Data": message.subject, "Charset": "UTF-8"}, "Body": body}
        if message.marketing:
            url = message.unsubscribe_url or ""
            if not url.lower().startswith("https://") or len(url) <= len("https://"):
                raise ValueError("a marketing email needs an https unsubscribe_url")
            simple["Headers"] = unsubscribe_headers(url)
        params: dict[str, Any] = {
            "FromEmailAddress": message.from_address,
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Simple": simple},
        }
        if message.reply_to:
            params["ReplyToAddresses"] = [message.reply_to]
        if self._configuration_set:
            params["ConfigurationSetName"] = self._configuration_set
        if message.reference:
            params["EmailTags"] = [{"Name": "reference", "Value": tag_value(message.reference)}]
        return params

    def send(self, message: Outbound) -> Result:
        from botocore.exceptions import ClientError

        params = self.request(message)
        try:
            answer = self._client.get().send_email(**params)
        except ClientError as error:
            return classify(error)
        except network_errors() as error:
            return network_failure(error)
        return Sent(str(answer["MessageId"]))
