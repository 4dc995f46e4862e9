"""Telegram through the Bot API's sendMessage (https://core.telegram.org/bots/api#sendmessage).

Every answer is {"ok": bool, ...}: on success `result` is the sent Message; on failure `error_code` (an
HTTP status) and `description`, with `parameters.retry_after` when flood control refused the call and
`parameters.migrate_to_chat_id` when a group became a supergroup. The Bot API has no idempotency key.

Classification: 429 → rate limited (after `retry_after` seconds); 400 (e.g. "chat not found"), 401 (token
revoked), 403 ("bot was blocked by the user", "user is deactivated"), 404 → permanent, with the status as
the code; 5xx and transport faults → retryable.
"""

from __future__ import annotations

from typing import Any

from audience.providers._http import JsonClient
from audience.providers.base import Failed, Outbound, Result, Sent, require, retry_after_header, title

_DEFAULT_WAIT = 1.0


def chat_id(to: str) -> int | str:
    """Telegram's chat_id: the numeric id as a number, a channel's @username as it is."""
    stripped = to.strip()
    return int(stripped) if stripped.lstrip("-").isdigit() else stripped


class TelegramBot:
    """Sends text messages as one bot."""

    def __init__(self, base_url: str, bot_token: str, *, timeout: float = 10, transport: Any = None) -> None:
        self._url = f"{base_url.rstrip('/')}/bot{bot_token}/sendMessage"
        self._http = JsonClient(timeout, transport)

    def payload(self, message: Outbound) -> dict[str, Any]:
        """The request body for `message` (ValueError unless it is a Telegram text message)."""
        require(message, ("telegram",), ("text",))
        if not message.text:
            raise ValueError("a text message needs text")
        return {"chat_id": chat_id(message.to), "text": message.text}

    def send(self, message: Outbound) -> Result:
        payload = self.payload(message)
        answer = self._http.post(self._url, payload)
        if isinstance(answer, Failed):
            return answer
        body = answer.body
        result = body.get("result")
        if answer.status == 200 and body.get("ok") is True:
            if not isinstance(result, dict) or "message_id" not in result:
                # Accepted, but with no id to track: sending again could deliver twice.
                return Failed("permanent", "unexpected_response", "sendMessage result without a message_id")
            chat = result.get("chat")
            chat_key = chat.get("id") if isinstance(chat, dict) and chat.get("id") is not None else payload["chat_id"]
            # The id inbound parsing gives Telegram messages: "chat_id:message_id".
            return Sent(f"{chat_key}:{result['message_id']}")
        status = body.get("error_code") if isinstance(body.get("error_code"), int) else answer.status
        description = title(str(body.get("description") or f"HTTP {answer.status}"))
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        if status == 429:
            wait = parameters.get("retry_after")
            if not isinstance(wait, int | float) or isinstance(wait, bool):
                wait = retry_after_header(answer.retry_after)
            return Failed("rate_limited", "429", description, float(wait) if wait is not None else _DEFAULT_WAIT)
        if status >= 500:
            return Failed("retryable", str(status), description)
        if parameters.get("migrate_to_chat_id") is not None:
            description = title(f"{description} (migrated to chat {parameters['migrate_to_chat_id']})")
        return Failed("permanent", str(status), description)

    def close(self) -> None:
        self._http.close()
