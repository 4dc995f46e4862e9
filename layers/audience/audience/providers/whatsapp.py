"""WhatsApp through Meta's Cloud API: POST /{version}/{phone_number_id}/messages.

Free-form text reaches a person only inside the 24-hour customer service window (opened by their last
message); outside it only an approved template does (error 131047 otherwise). The API has no idempotency
key: a send that timed out may have gone through, so callers keep the message's idempotency key with its
status and reconcile through status webhooks (which carry the wamid returned here).

Error classification follows Meta's Cloud API error-code reference
(developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes) and the Graph API
error-handling guide; codes not listed fall back on `is_transient` and the HTTP status.
"""

from __future__ import annotations

from typing import Any

from audience.providers._graph import graph_error
from audience.providers._http import Answer, JsonClient, status_failure
from audience.providers.base import Failed, Outbound, Param, Result, Sent, Template, require, retry_after_header

# Rate limits, with the wait used when the answer has no Retry-After header.
RATE_LIMITED: dict[int, float] = {
    4: 60.0,  # API Too Many Calls: the app's Graph API call budget (a rolling window)
    17: 60.0,  # API user too many calls
    613: 60.0,  # calls to this API exceeded the rate limit
    80007: 60.0,  # the WhatsApp Business Account's rate limit
    130429: 1.0,  # Cloud API throughput (messages per second of the business number) reached
    131056: 6.0,  # pair rate limit: about one message every 6 s to the same person
    131048: 3600.0,  # spam rate limit: the number is restricted after messages were blocked or reported
}

# Transient faults on Meta's side: the same request may succeed later.
RETRYABLE: frozenset[int] = frozenset(
    {
        1,  # API Unknown: possible server error
        2,  # API Service: temporary downtime or overload
        131000,  # something went wrong
        131016,  # service unavailable
        131057,  # business account in maintenance mode (e.g. a throughput upgrade)
    }
)

# Refusals that sending the same message again cannot change: the recipient, the message, the template
# or the account has to change first.
PERMANENT: frozenset[int] = frozenset(
    {
        0,  # AuthException
        3,  # capability or permission missing
        10,  # permission denied
        33,  # the business phone number was deleted
        100,  # invalid parameter
        190,  # access token expired or invalid
        368,  # temporarily blocked for policy violations
        130472,  # the user's number is part of an experiment
        131005,  # access denied
        131008,  # required parameter missing
        131009,  # parameter value not valid
        131021,  # recipient cannot be the sender
        131026,  # message undeliverable (not on WhatsApp, old client, terms not accepted, blocked)
        131031,  # business account locked
        131037,  # display name not approved
        131042,  # business eligibility / payment issue
        131045,  # incorrect certificate
        131047,  # re-engagement: more than 24 h since the person last wrote; send a template
        131049,  # Meta chose not to deliver (per-user marketing limit); not to be retried soon
        131050,  # the person stopped marketing messages from this business
        131051,  # unsupported message type
        131052,  # media download error
        131053,  # media upload error
        133010,  # phone number not registered
        135000,  # generic user error
    }
)


def _permanent(code: int) -> bool:
    # 200-299: API permission errors; 132000-132069: template errors (not found, not approved, paused,
    # parameter count or format mismatch, ...); 133000-133009: registration state of the number.
    return code in PERMANENT or 200 <= code <= 299 or 132000 <= code <= 132999 or 133000 <= code <= 133009


def classify(answer: Answer) -> Failed:
    """The typed failure of a refused Cloud API request."""
    wait = retry_after_header(answer.retry_after)
    error = graph_error(answer.body)
    if error is None or error.code is None:
        return status_failure(answer, wait)
    code = str(error.code)
    if error.code in RATE_LIMITED:
        return Failed("rate_limited", code, error.title, wait if wait is not None else RATE_LIMITED[error.code])
    if error.code in RETRYABLE:
        return Failed("retryable", code, error.title, wait)
    if _permanent(error.code):
        return Failed("permanent", code, error.title)
    if answer.status == 429:
        return Failed("rate_limited", code, error.title, wait if wait is not None else 60.0)
    if error.is_transient or answer.status >= 500:
        return Failed("retryable", code, error.title, wait)
    return Failed("permanent", code, error.title)


def _parameter(param: Param) -> dict[str, Any]:
    if param.kind == "text":
        value: dict[str, Any] = {"type": "text", "text": param.value}
        if param.name:
            value["parameter_name"] = param.name
        return value
    return {"type": param.kind, param.kind: {"link": param.value}}


def template_payload(template: Template) -> dict[str, Any]:
    """The `template` object of a send: name, language and one component per part that has values."""
    components: list[dict[str, Any]] = []
    if template.header:
        components.append({"type": "header", "parameters": [_parameter(p) for p in template.header]})
    if template.body:
        components.append({"type": "body", "parameters": [_parameter(p) for p in template.body]})
    for button in template.buttons:
        if button.sub_type == "quick_reply":
            parameter = {"type": "payload", "payload": button.param}
        elif button.sub_type == "url":
            parameter = {"type": "text", "text": button.param}
        else:
            raise ValueError(f"unsupported template button sub_type {button.sub_type!r}")
        components.append(
            {"type": "button", "sub_type": button.sub_type, "index": str(button.index), "parameters": [parameter]}
        )
    payload: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if components:
        payload["components"] = components
    return payload


class WhatsAppCloud:
    """Sends text and template messages from one business phone number."""

    def __init__(
        self,
        base_url: str,
        phone_number_id: str,
        access_token: str,
        *,
        api_version: str = "v21.0",
        timeout: float = 10,
        transport: Any = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/{api_version}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._http = JsonClient(timeout, transport)

    def payload(self, message: Outbound) -> dict[str, Any]:
        """The request body for `message` (ValueError if it is not a WhatsApp text or template)."""
        require(message, ("whatsapp",), ("text", "template"))
        payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": message.to}
        if message.kind == "text":
            if not message.text:
                raise ValueError("a text message needs text")
            payload.update(type="text", text={"body": message.text, "preview_url": False})
        else:
            if message.template is None:
                raise ValueError("a template message needs a template")
            payload.update(type="template", template=template_payload(message.template))
        return payload

    def send(self, message: Outbound) -> Result:
        answer = self._http.post(self._url, self.payload(message), self._headers)
        if isinstance(answer, Failed):
            return answer
        if 200 <= answer.status < 300:
            messages = answer.body.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[0], dict) and messages[0].get("id"):
                return Sent(str(messages[0]["id"]))
            # Accepted, but with no id to track: sending again could deliver twice.
            return Failed("permanent", "unexpected_response", f"HTTP {answer.status} without a message id")
        return classify(answer)

    def close(self) -> None:
        self._http.close()
