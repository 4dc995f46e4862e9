"""Messenger and Instagram through Meta's Send API: POST /{version}/{page_or_ig_id}/messages.

Messages go out with messaging_type RESPONSE, which the platform allows inside the standard messaging
window: 24 hours after the person's last message (up to 7 days after a first message that came from a
click-to-Messenger/Direct ad). Outside it the platform refuses the send (code 10, subcode 2018278,
"sent outside of allowed window"), which comes back here as a permanent failure. Sending later needs what
this adapter deliberately does not do on its own: the HUMAN_AGENT message tag (messaging_type
MESSAGE_TAG, up to 7 days, only for replies a person writes, and only with the Human Agent permission),
or the platform's opt-in marketing/utility messages. Message tags may not carry promotional content.

With Facebook Login the base URL is https://graph.facebook.com and the id is the Page's (for Instagram,
the Page linked to the professional account); with Instagram Login it is https://graph.instagram.com and
the Instagram professional account's id.

Error classification follows Meta's Messenger Platform error-code reference
(developers.facebook.com/docs/messenger-platform/error-codes and .../reference/send-api/error-codes) and
the Graph API rate-limiting guide.
"""

from __future__ import annotations

from typing import Any, Literal

from audience.providers._graph import graph_error
from audience.providers._http import Answer, JsonClient, status_failure
from audience.providers.base import Failed, Outbound, Result, Sent, require, retry_after_header

# Rate limits (wait used without a Retry-After header): app, user and Page call budgets, the Send API's
# own limit, and the Instagram / Messenger business-use-case limits.
RATE_LIMITED: dict[int, float] = {4: 60.0, 17: 60.0, 32: 60.0, 613: 60.0, 80002: 60.0, 80006: 60.0}

# Transient: unknown error, service error ("retry your request later"), temporary send failure.
RETRYABLE: frozenset[int] = frozenset({1, 2, 1200})

# Permanent: invalid parameter (100, e.g. subcode 2018001 "no matching user found"), permission (10, e.g.
# subcode 2018278 "sent outside of allowed window"; 200-299), access token (190), policy block (368),
# the person is not available (551, e.g. subcode 1545041: they blocked the Page or left the platform).
PERMANENT: frozenset[int] = frozenset({3, 10, 100, 190, 368, 551})


def classify(answer: Answer) -> Failed:
    """The typed failure of a refused Send API request; the code is "code:subcode" when there is a
    subcode (Messenger tells different conditions apart by subcode)."""
    wait = retry_after_header(answer.retry_after)
    error = graph_error(answer.body)
    if error is None or error.code is None:
        return status_failure(answer, wait)
    code = f"{error.code}:{error.subcode}" if error.subcode else str(error.code)
    if error.code in RATE_LIMITED:
        return Failed("rate_limited", code, error.title, wait if wait is not None else RATE_LIMITED[error.code])
    if error.code in RETRYABLE:
        return Failed("retryable", code, error.title, wait)
    if error.code in PERMANENT or 200 <= error.code <= 299:
        return Failed("permanent", code, error.title)
    if answer.status == 429:
        return Failed("rate_limited", code, error.title, wait if wait is not None else 60.0)
    if error.is_transient or answer.status >= 500:
        return Failed("retryable", code, error.title, wait)
    return Failed("permanent", code, error.title)


class MetaSendApi:
    """Sends text messages from one Facebook Page (Messenger) or Instagram professional account."""

    def __init__(
        self,
        base_url: str,
        page_or_ig_id: str,
        access_token: str,
        *,
        channel: Literal["messenger", "instagram"] = "messenger",
        api_version: str = "v21.0",
        timeout: float = 10,
        transport: Any = None,
    ) -> None:
        if channel not in ("messenger", "instagram"):
            raise ValueError(f"the Send API serves messenger and instagram, not {channel}")
        self.channel = channel
        self._url = f"{base_url.rstrip('/')}/{api_version}/{page_or_ig_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._http = JsonClient(timeout, transport)

    def payload(self, message: Outbound) -> dict[str, Any]:
        """The request body for `message` (ValueError unless it is a text message on this channel)."""
        require(message, (self.channel,), ("text",))
        if not message.text:
            raise ValueError("a text message needs text")
        return {"recipient": {"id": message.to}, "messaging_type": "RESPONSE", "message": {"text": message.text}}

    def send(self, message: Outbound) -> Result:
        answer = self._http.post(self._url, self.payload(message), self._headers)
        if isinstance(answer, Failed):
            return answer
        if 200 <= answer.status < 300:
            if answer.body.get("message_id"):
                return Sent(str(answer.body["message_id"]))
            return Failed("permanent", "unexpected_response", f"HTTP {answer.status} without a message_id")
        return classify(answer)

    def close(self) -> None:
        self._http.close()
