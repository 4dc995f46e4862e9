"""Channel connections: one account of an org on one platform (no I/O, cheap to import).

Which settings and secrets each platform takes, and which of them names the account in the platform's
webhook payloads (`route_keys`): the webhook path finds the org from the payload through these, never
from a signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Platform of a connection → the contact channel its messages arrive on.
PLATFORMS: dict[str, str] = {
    "whatsapp": "whatsapp",
    "messenger": "messenger",
    "instagram": "instagram",
    "telegram": "telegram",
    "ses": "email",
    "sms": "sms",
    "custom": "custom",
    "webchat": "webchat",
    "sandbox": "sandbox",  # plays the channel named in its settings (see Connection.channel)
}
META_PLATFORMS = frozenset({"whatsapp", "messenger", "instagram"})
SNS_PLATFORMS = frozenset({"ses", "sms"})
SIGNED_JSON_PLATFORMS = frozenset({"custom", "webchat", "sandbox"})
# The channels a sandbox connection can play.
SANDBOX_CHANNELS = ("whatsapp", "messenger", "instagram", "telegram", "email", "sms")

_DIGITS = re.compile(r"^[0-9]{1,32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")
_IDENTITY = re.compile(r"^([^@\s]{1,64}@)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
_TOPIC_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")
_BOT_TOKEN = re.compile(r"^([0-9]{1,20}):[A-Za-z0-9_-]{30,64}$")
_SECRET_TEXT = re.compile(r"^[\x21-\x7e]{1,512}$")
# Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - as a webhook secret token.
TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True, slots=True)
class SettingRule:
    pattern: re.Pattern[str]
    description: str
    required: bool = False
    route: str | None = None  # the route kind this setting is the key of, if any


# Non-secret settings per platform: stored on the connection and shown in responses.
SETTINGS: dict[str, dict[str, SettingRule]] = {
    "whatsapp": {
        "phone_number_id": SettingRule(_DIGITS, "the WhatsApp phone number id (digits)", True, "whatsapp"),
        "business_account_id": SettingRule(_DIGITS, "the WhatsApp Business Account id (digits)", True, "whatsapp_waba"),
        "display_phone_number": SettingRule(re.compile(r"^\+?[0-9 ()-]{4,24}$"), "the number as displayed"),
    },
    "messenger": {"page_id": SettingRule(_DIGITS, "the Facebook Page id (digits)", True, "messenger")},
    "instagram": {
        "instagram_account_id": SettingRule(
            _DIGITS, "the Instagram professional account id (digits)", True, "instagram"
        )
    },
    "telegram": {"bot_username": SettingRule(re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$"), "the bot's @username")},
    "ses": {
        "identity": SettingRule(_IDENTITY, "a verified SES identity: an email address or a domain", True, "ses"),
        "configuration_set": SettingRule(
            re.compile(r"^[a-z0-9_-]{1,64}$"), "the SES configuration set that publishes events (1-64 a-z, 0-9, _ or -)"
        ),
    },
    "sms": {"origination_number": SettingRule(_E164, "the origination number in E.164", True, "sms")},
    "custom": {},
    "webchat": {},
    "sandbox": {
        "channel": SettingRule(
            re.compile(r"^(whatsapp|messenger|instagram|telegram|email|sms)$"),
            "the channel it plays: whatsapp, messenger, instagram, telegram, email or sms",
            True,
        ),
    },
}
# Sending pace, per connection: messages per second (shared by every sender of the stack) and an optional
# daily cap (a WhatsApp number's messaging tier, for instance). Defaults follow each platform's documented
# rate: WhatsApp Cloud API 80 msg/s per number (up to 1,000 on request), Telegram about 30 msg/s per bot,
# SES 14 msg/s (a production account's usual starting quota; raise it to the account's), End User
# Messaging 1 msg/s (a long code's; short codes and toll-free numbers allow more).
PACING_SETTINGS: dict[str, tuple[int, int]] = {"messages_per_second": (1, 1000), "daily_limit": (1, 100_000_000)}
DEFAULT_RATE: dict[str, int] = {
    "whatsapp": 80,
    "messenger": 40,
    "instagram": 20,
    "telegram": 30,
    "ses": 14,
    "sms": 1,
    "sandbox": 80,
}
SENDING_PLATFORMS = frozenset(DEFAULT_RATE)

# Settings that are lists of SNS topic ARNs (SES and SMS events arrive through SNS).
TOPIC_SETTING = "topic_arns"
MAX_TOPICS = 10

# Secrets per platform: (name, required, description). Kept in Secrets Manager, never returned.
SECRETS: dict[str, dict[str, tuple[bool, str]]] = {
    "whatsapp": {
        "app_secret": (True, "the Meta app secret that signs webhook calls (X-Hub-Signature-256)"),
        "verify_token": (True, "the verify token typed into the app's webhook settings"),
        "access_token": (False, "a system user access token, for sending"),
    },
    "telegram": {"bot_token": (True, "the bot token from @BotFather")},
    "ses": {},
    "sms": {},
    "custom": {"signing_secret": (True, "the shared secret that signs calls (16 to 512 characters)")},
}
SECRETS["messenger"] = SECRETS["whatsapp"]
SECRETS["instagram"] = SECRETS["whatsapp"]
SECRETS["webchat"] = SECRETS["custom"]
SECRETS["sandbox"] = SECRETS["custom"]
# Secrets the product generates itself (never given by the caller).
GENERATED_SECRETS = frozenset({"webhook_secret", "webhook_secret_pending"})


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    org_id: str
    platform: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    secret_names: tuple[str, ...] = ()  # which secrets are stored (their values never leave Secrets Manager)
    telegram_webhook: dict[str, Any] | None = None  # {"url", "registered_at"} once setWebhook succeeded
    # {"on_new_contact": {"tags", "segments"}, "auto_reply": {"allow_segments", "deny_segments"}}
    # (audience.channels.inbound_rules); None when never set.
    inbound_rules: dict[str, Any] | None = None
    created_at: str = ""
    updated_at: str = ""

    @property
    def channel(self) -> str:
        if self.platform == "sandbox":
            return str(self.settings.get("channel") or "sandbox")
        return PLATFORMS[self.platform]

    def routes(self) -> list[tuple[str, str]]:
        """(route kind, account id) pairs naming this connection in webhook payloads."""
        found: list[tuple[str, str]] = []
        for name, rule in SETTINGS[self.platform].items():
            value = self.settings.get(name)
            if rule.route and value:
                found.append((rule.route, str(value).lower() if self.platform == "ses" else str(value)))
        return found

    @property
    def topic_arns(self) -> tuple[str, ...]:
        return tuple(self.settings.get(TOPIC_SETTING) or ())


def bot_id(bot_token: str) -> str | None:
    """The bot's numeric id: the part of a Telegram bot token before the colon."""
    match = _BOT_TOKEN.match(bot_token)
    return match.group(1) if match else None


def check_bot_token(value: str) -> bool:
    return bool(_BOT_TOKEN.match(value))


def check_secret_text(value: str) -> bool:
    return bool(_SECRET_TEXT.match(value))


def check_topic_arn(value: str) -> bool:
    return bool(_TOPIC_ARN.match(value))
