"""SMS through AWS End User Messaging SMS (the pinpoint-sms-voice-v2 API), SendTextMessage.

One message to one E.164 number from an origination identity (a phone number, sender id, pool, or their
ARN). The reference travels in `Context`, which the service writes to the configuration set's event
destinations with every delivery event. SendTextMessage has no idempotency key.

Errors (SendTextMessage's, botocore's service model, whose exceptions carry a `Reason`):
ThrottlingException → rate limited; InternalServerException, 5xx and transport faults → retryable;
ValidationException, ConflictException (e.g. DESTINATION_PHONE_NUMBER_OPTED_OUT — the person replied STOP),
AccessDeniedException (ACCOUNT_DISABLED, INSUFFICIENT_ACCOUNT_REPUTATION), ResourceNotFoundException and
ServiceQuotaExceededException → permanent. The quota case is permanent because its reasons (monthly spend
limit reached, daily limits of a tier) do not clear within a retry's wait: an operator raises the limit,
or the message goes out another day as a new send. The failure's code is the `Reason` when there is one,
else the exception's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from audience.providers._aws import LazyClient, aws_error, network_errors
from audience.providers.base import Failed, Outbound, Result, Sent, network_failure, require, title

RATE_LIMITED: frozenset[str] = frozenset({"ThrottlingException"})
RETRYABLE: frozenset[str] = frozenset({"InternalServerException"})
PERMANENT: frozenset[str] = frozenset(
    {
        "ValidationException",
        "ConflictException",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "ServiceQuotaExceededException",
    }
)

_THROTTLE_WAIT = 1.0


def _default_client() -> Any:
    from audience import aws

    return aws.client("pinpoint-sms-voice-v2")


def classify(error: Any) -> Failed:
    """The typed failure of a botocore ClientError from SendTextMessage."""
    parts = aws_error(error)
    code = parts.reason or parts.code
    text = title(f"{parts.code}: {parts.message}" if parts.message else parts.code)
    if parts.code in RATE_LIMITED or parts.status == 429:
        return Failed("rate_limited", code, text, _THROTTLE_WAIT)
    if parts.code in PERMANENT:
        return Failed("permanent", code, text)
    if parts.code in RETRYABLE or parts.status >= 500 or parts.status == 0:
        return Failed("retryable", code, text)
    return Failed("permanent", code, text)


class EndUserMessagingSms:
    """Sends text messages from one origination identity."""

    def __init__(
        self,
        origination_identity: str,
        *,
        configuration_set: str | None = None,
        message_type: Literal["TRANSACTIONAL", "PROMOTIONAL"] = "TRANSACTIONAL",
        client_factory: Callable[[], Any] = _default_client,
    ) -> None:
        if message_type not in ("TRANSACTIONAL", "PROMOTIONAL"):
            raise ValueError(f"message_type must be TRANSACTIONAL or PROMOTIONAL, not {message_type!r}")
        self._origination_identity = origination_identity
        self._configuration_set = configuration_set
        self._message_type = message_type
        self._client = LazyClient(client_factory)

    def request(self, message: Outbound) -> dict[str, Any]:
        """The SendTextMessage parameters for `message` (ValueError unless it is an SMS text)."""
        require(message, ("sms",), ("text",))
        if not message.text:
            raise ValueError("a text message needs text")
        params: dict[str, Any] = {
            "DestinationPhoneNumber": message.to,
            "OriginationIdentity": self._origination_identity,
            "MessageBody": message.text,
            "MessageType": self._message_type,
        }
        if self._configuration_set:
            params["ConfigurationSetName"] = self._configuration_set
        if message.reference:
            params["Context"] = {"reference": message.reference}
        return params

    def send(self, message: Outbound) -> Result:
        from botocore.exceptions import ClientError

        params = self.request(message)
        try:
            answer = self._client.get().send_text_message(**params)
        except ClientError as error:
            return classify(error)
        except network_errors() as error:
            return network_failure(error)
        return Sent(str(answer["MessageId"]))
