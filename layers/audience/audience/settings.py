"""Process settings, read from the environment once and validated."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache

from audience.errors import ConfigurationError

_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class Settings:
    """What every function needs to know about the stack it runs in."""

    stage: str
    contacts_table: str
    orgs_table: str
    default_country: str
    rate_limit_per_minute: int
    max_body_bytes: int
    # Functions that start segment jobs (build, copy, purge); empty where a function never does.
    segment_jobs_state_machine: str = ""
    # Exports (the API requests them, ExportFunction writes them); empty where a function has none.
    exports_bucket: str = ""
    export_queue_url: str = ""
    # Imports (the API creates them, ImportFunction reads the files); empty where a function has none.
    imports_bucket: str = ""
    import_state_machine: str = ""
    # The bus domain events go to (audience.events); the Bot API's address (a local stand-in in tests), and the
    # public base URL of webhooks when a custom domain fronts the API (else the request's own host).
    event_bus_name: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    public_base_url: str = ""
    # Broadcasts: their table, the state machine that runs marketing schedules, the send queues, and the
    # Graph API's address (a local stand-in in tests).
    broadcasts_table: str = ""
    broadcast_state_machine: str = ""
    send_queue_url: str = ""
    transactional_queue_url: str = ""
    graph_api_url: str = "https://graph.facebook.com"
    # The base of public links the product hands out (one-click unsubscribe in marketing email).
    api_base_url: str = ""
    # Where sandbox connections queue the statuses of what they "sent".
    sandbox_queue_url: str = ""
    # The state machine of follow-up timers (idle conversations, follow-ups requested for a time).
    follow_up_state_machine: str = ""
    # Outbound webhooks: the queue of delivery attempts; plain http and private or loopback addresses (local
    # development and tests only); the first retry wait, which scales the whole schedule (10 s in production).
    webhook_delivery_queue_url: str = ""
    webhook_allow_private_urls: bool = False
    webhook_retry_base_seconds: float = 10.0


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


@cache
def get_settings() -> Settings:
    """Read and validate the environment once per execution environment."""
    country = os.environ.get("DEFAULT_COUNTRY", "US").strip().upper()
    if not _COUNTRY.match(country):
        raise ConfigurationError(f"DEFAULT_COUNTRY must be an ISO 3166 alpha-2 code, got {country!r}")
    return Settings(
        stage=os.environ.get("STAGE", "dev"),
        contacts_table=_required("CONTACTS_TABLE"),
        orgs_table=_required("ORGS_TABLE"),
        default_country=country,
        rate_limit_per_minute=_int("RATE_LIMIT_PER_MINUTE", 500),
        max_body_bytes=_int("MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024),
        segment_jobs_state_machine=os.environ.get("SEGMENT_JOBS_STATE_MACHINE", "").strip(),
        exports_bucket=os.environ.get("EXPORTS_BUCKET", "").strip(),
        export_queue_url=os.environ.get("EXPORT_QUEUE_URL", "").strip(),
        imports_bucket=os.environ.get("IMPORTS_BUCKET", "").strip(),
        import_state_machine=os.environ.get("IMPORT_STATE_MACHINE", "").strip(),
        event_bus_name=os.environ.get("EVENT_BUS_NAME", "").strip(),
        telegram_api_url=_url("TELEGRAM_API_URL", "https://api.telegram.org"),
        public_base_url=_url("PUBLIC_BASE_URL", ""),
        broadcasts_table=os.environ.get("BROADCASTS_TABLE", "").strip(),
        broadcast_state_machine=os.environ.get("BROADCAST_STATE_MACHINE", "").strip(),
        send_queue_url=os.environ.get("SEND_QUEUE_URL", "").strip(),
        transactional_queue_url=os.environ.get("TRANSACTIONAL_QUEUE_URL", "").strip(),
        graph_api_url=_url("GRAPH_API_URL", "https://graph.facebook.com"),
        api_base_url=_url("API_BASE_URL", ""),
        sandbox_queue_url=os.environ.get("SANDBOX_QUEUE_URL", "").strip(),
        follow_up_state_machine=os.environ.get("FOLLOW_UP_STATE_MACHINE", "").strip(),
        webhook_delivery_queue_url=os.environ.get("WEBHOOK_DELIVERY_QUEUE_URL", "").strip(),
        webhook_allow_private_urls=os.environ.get("WEBHOOK_ALLOW_PRIVATE_URLS", "").strip().lower() == "true",
        webhook_retry_base_seconds=_seconds("WEBHOOK_RETRY_BASE_SECONDS", 10.0),
    )


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise ConfigurationError(f"{name} must be more than 0 and at most 3600, got {value}")
    return value


def _url(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip().rstrip("/")
    if value and not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", value):
        raise ConfigurationError(f"{name} must be an http(s) URL, got {value!r}")
    return value
