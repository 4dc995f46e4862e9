"""Channel connections of an org: validated, their secrets in Secrets Manager, their routes claimed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from audience import clock, ids
from audience.channels.models import (
    GENERATED_SECRETS,
    MAX_TOPICS,
    PACING_SETTINGS,
    PLATFORMS,
    SECRETS,
    SENDING_PLATFORMS,
    SETTINGS,
    TOPIC_SETTING,
    Connection,
    bot_id,
    check_bot_token,
    check_secret_text,
    check_topic_arn,
)
from audience.channels.repository import MAX_CONNECTIONS_PER_ORG, ConnectionsRepository
from audience.channels.secrets import SecretStore
from audience.channels.telegram import BotApi
from audience.errors import ConflictError, ValidationError

MAX_NAME = 100
WEBHOOK_PATH = "/webhooks/{connection_id}"


def webhook_path(connection_id: str) -> str:
    return WEBHOOK_PATH.format(connection_id=connection_id)


class ConnectionService:
    def __init__(self, connections: ConnectionsRepository, secrets: SecretStore, bot_api: BotApi) -> None:
        self._connections = connections
        self._secrets = secrets
        self._bot_api = bot_api

    def create(self, org_id: str, data: dict[str, Any]) -> Connection:
        platform = data.get("platform")
        if platform not in PLATFORMS:
            raise ValidationError.for_field("platform", platform, f"must be one of {', '.join(PLATFORMS)}")
        if len(self._connections.list(org_id)) >= MAX_CONNECTIONS_PER_ORG:
            raise ConflictError(f"an org can have at most {MAX_CONNECTIONS_PER_ORG} connections")
        settings = _settings(platform, data.get("settings") or {}, current={}, creating=True)
        secrets = _secrets(platform, data.get("secrets") or {}, creating=True)
        if platform == "telegram":
            settings["bot_id"] = bot_id(secrets["bot_token"])
        now = clock.now_iso()
        connection = Connection(
            id=ids.new_id("ch"),
            org_id=org_id,
            platform=platform,
            name=_name(data.get("name")),
            settings=settings,
            secret_names=tuple(sorted(secrets)),
            created_at=now,
            updated_at=now,
        )
        # Secrets first: once the routes exist, webhook calls for the account look for them.
        if secrets:
            self._secrets.put(connection.id, secrets, merge=False)
        try:
            self._connections.create(connection)
        except Exception:
            if secrets:
                self._secrets.delete(connection.id)
            raise
        return connection

    def get(self, org_id: str, connection_id: str) -> Connection:
        return self._connections.get(org_id, connection_id)

    def list(self, org_id: str) -> list[Connection]:
        return self._connections.list(org_id)

    def update(self, org_id: str, connection_id: str, data: dict[str, Any]) -> Connection:
        """Rename, change settings that do not name the account, or rotate secrets."""
        current = self._connections.get(org_id, connection_id)
        name = _name(data["name"]) if data.get("name") is not None else current.name
        settings = current.settings
        if data.get("settings") is not None:
            settings = _settings(current.platform, data["settings"], current=current.settings, creating=False)
        secret_names = current.secret_names
        if data.get("secrets"):
            secrets = _secrets(current.platform, data["secrets"], creating=False)
            if "bot_token" in secrets and bot_id(secrets["bot_token"]) != current.settings.get("bot_id"):
                raise ValidationError.for_field(
                    "secrets.bot_token", None, "belongs to another bot; create a new connection for it"
                )
            stored = self._secrets.put(connection_id, secrets, merge=True)
            secret_names = tuple(sorted(k for k in stored if k not in GENERATED_SECRETS))
        updated = replace(current, name=name, settings=settings, secret_names=secret_names, updated_at=clock.now_iso())
        if updated != replace(current, updated_at=updated.updated_at):
            self._connections.update(updated, current)
            return updated
        return current

    def delete(self, org_id: str, connection_id: str) -> None:
        connection = self._connections.get(org_id, connection_id)
        self._connections.delete(connection)
        self._secrets.delete(connection_id)

    def register_telegram_webhook(self, org_id: str, connection_id: str, base_url: str) -> Connection:
        """Point the bot's webhook at this connection's URL with a new secret token (setWebhook)."""
        connection = self._connections.get(org_id, connection_id)
        if connection.platform != "telegram":
            raise ValidationError.for_field("platform", connection.platform, "only Telegram connections register here")
        url = base_url.rstrip("/") + webhook_path(connection.id)
        if not url.startswith("https://"):
            raise ValidationError.for_field("webhook_url", url, "Telegram only calls https webhook URLs")
        # The new token is accepted beside the current one from before Telegram is told until after it
        # answered: no update is refused in between, and a refused registration changes nothing.
        token = ids.random_token(40)
        stored = self._secrets.put(connection.id, {"webhook_secret_pending": token}, merge=True)
        try:
            self._bot_api.set_webhook(stored["bot_token"], url, token)
        except Exception:
            self._secrets.put(connection.id, {}, merge=True, remove=("webhook_secret_pending",))
            raise
        self._secrets.put(connection.id, {"webhook_secret": token}, merge=True, remove=("webhook_secret_pending",))
        updated = replace(
            connection,
            telegram_webhook={"url": url, "registered_at": clock.now_iso()},
            updated_at=clock.now_iso(),
        )
        self._connections.update(updated, connection)
        return updated


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise ValidationError.for_field("name", value, f"must be 1 to {MAX_NAME} characters")
    return value.strip()


def _settings(platform: str, given: Any, *, current: dict[str, Any], creating: bool) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ValidationError.for_field("settings", None, "must be an object")
    rules = SETTINGS[platform]
    result = dict(current)
    for key, value in given.items():
        where = f"settings.{key}"
        if key == TOPIC_SETTING and platform in ("ses", "sms"):
            if (
                not isinstance(value, list)
                or len(value) > MAX_TOPICS
                or not all(isinstance(v, str) and check_topic_arn(v) for v in value)
            ):
                raise ValidationError.for_field(where, None, f"must be a list of at most {MAX_TOPICS} SNS topic ARNs")
            result[key] = list(dict.fromkeys(value))
            continue
        if key in PACING_SETTINGS and platform in SENDING_PLATFORMS:
            low, high = PACING_SETTINGS[key]
            if value is None and key == "daily_limit":
                result.pop(key, None)
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValidationError.for_field(where, value, f"must be a whole number from {low} to {high:,}")
            result[key] = value
            continue
        rule = rules.get(key)
        if rule is None:
            pacing = list(PACING_SETTINGS) if platform in SENDING_PLATFORMS else []
            known = [*rules, *([TOPIC_SETTING] if platform in ("ses", "sms") else []), *pacing]
            raise ValidationError.for_field(
                where, None, f"is not a {platform} setting (known: {', '.join(known) or 'none'})"
            )
        text = value.strip().lower() if platform == "ses" and isinstance(value, str) else value
        if not isinstance(text, str) or not rule.pattern.match(text):
            raise ValidationError.for_field(where, value, f"must be {rule.description}")
        if rule.route and not creating and current.get(key) != text:
            raise ValidationError.for_field(
                where, value, "names the account and cannot change; create a new connection"
            )
        result[key] = text
    if creating:
        for key, rule in rules.items():
            if rule.required and key not in result:
                raise ValidationError.for_field(f"settings.{key}", None, f"is required: {rule.description}")
    return result


def _secrets(platform: str, given: Any, *, creating: bool) -> dict[str, str]:
    if not isinstance(given, dict):
        raise ValidationError.for_field("secrets", None, "must be an object")
    rules = SECRETS[platform]
    result: dict[str, str] = {}
    for key, value in given.items():
        where = f"secrets.{key}"
        if key not in rules:
            raise ValidationError.for_field(
                where, None, f"is not a {platform} secret (known: {', '.join(rules) or 'none'})"
            )
        # Secret values are never echoed back, not even in an error.
        if not isinstance(value, str) or not check_secret_text(value):
            raise ValidationError.for_field(where, None, "must be 1 to 512 printable ASCII characters without spaces")
        if key == "bot_token" and not check_bot_token(value):
            raise ValidationError.for_field(where, None, "is not a Telegram bot token (`<bot id>:<secret>`)")
        if key == "signing_secret" and len(value) < 16:
            raise ValidationError.for_field(where, None, "must be at least 16 characters")
        result[key] = value
    if creating:
        for key, (required, description) in rules.items():
            if required and key not in result:
                raise ValidationError.for_field(f"secrets.{key}", None, f"is required: {description}")
    return result
