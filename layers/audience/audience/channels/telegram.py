"""The Telegram Bot API calls connections make (https://core.telegram.org/bots/api)."""

from __future__ import annotations

from typing import Any

from audience.errors import UpstreamError

# Updates a bot's webhook asks for: messages (and their edits), channel posts, button presses and
# membership changes (a user blocking the bot).
ALLOWED_UPDATES = ["message", "edited_message", "channel_post", "callback_query", "my_chat_member"]


class BotApi:
    """A small client of the Bot API at `base_url` (https://api.telegram.org, or a local stand-in)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout

    def call(self, bot_token: str, method: str, payload: dict[str, Any]) -> Any:
        """Call `method`; the `result` on success, an UpstreamError with Telegram's own words otherwise."""
        import httpx  # only the API function registers webhooks; the webhook path never imports httpx

        url = f"{self._base_url}/bot{bot_token}/{method}"
        try:
            response = httpx.post(url, json=payload, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise UpstreamError(f"Telegram {method} failed: {type(error).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not body.get("ok"):
            description = body.get("description") or f"HTTP {response.status_code}"
            raise UpstreamError(
                f"Telegram {method} refused: {description}",
                provider_code=body.get("error_code", response.status_code),
            )
        return body.get("result")

    def set_webhook(self, bot_token: str, url: str, secret_token: str) -> None:
        self.call(
            bot_token,
            "setWebhook",
            {"url": url, "secret_token": secret_token, "allowed_updates": ALLOWED_UPDATES, "max_connections": 40},
        )
