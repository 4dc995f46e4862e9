"""Orgs and API keys: creation, authentication and per-key rate limiting."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

from audience import clock, ids
from audience.errors import AuthenticationError, RateLimitedError, ValidationError
from audience.orgs.models import FIELD_TYPES, ApiKey, FieldDefinition, Org, Principal, RateWindow
from audience.orgs.repository import OrgsRepository

KEY_PREFIX = "aud"
_KEY_ID_LENGTH = 16
_SECRET_LENGTH = 52  # 260 random bits
_KEY_FORMAT = re.compile(rf"^{KEY_PREFIX}_([0-9a-z]{{{_KEY_ID_LENGTH}}})_([0-9a-z]{{{_SECRET_LENGTH}}})$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
RATE_WINDOW_SECONDS = 60


def hash_key(api_key: str) -> str:
    """SHA-256 of the whole key; keys carry 260 random bits, so a fast hash is the right tool."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A fresh (key id, full key) pair; the key id doubles as the lookup prefix."""
    key_id = ids.random_token(_KEY_ID_LENGTH)
    return key_id, f"{KEY_PREFIX}_{key_id}_{ids.random_token(_SECRET_LENGTH)}"


def validate_country(country: str) -> str:
    value = country.strip().upper()
    if not _COUNTRY.match(value):
        raise ValidationError.for_field("default_country", country, "must be an ISO 3166-1 alpha-2 code")
    return value


class OrgService:
    """Everything about orgs that is not contacts."""

    def __init__(self, repository: OrgsRepository, *, default_country: str, default_rate_limit: int) -> None:
        self._repo = repository
        self._default_country = default_country
        self._default_rate_limit = default_rate_limit

    # -- orgs ---------------------------------------------------------------------------------------

    def create_org(self, name: str, *, default_country: str | None = None, org_id: str | None = None) -> Org:
        org = Org(
            id=org_id or ids.new_id("org"),
            name=name,
            default_country=validate_country(default_country or self._default_country),
            created_at=clock.now_iso(),
        )
        self._repo.put_org(org)
        return self._repo.get_org(org.id)

    def get_org(self, org_id: str) -> Org:
        return self._repo.get_org(org_id)

    def update_org(self, org_id: str, *, name: str | None = None, default_country: str | None = None) -> Org:
        country = validate_country(default_country) if default_country is not None else None
        return self._repo.update_org(org_id, name=name, default_country=country)

    # -- API keys -----------------------------------------------------------------------------------

    def create_key(
        self, org_id: str, name: str, *, rate_limit_per_minute: int | None = None, secret: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key and return it with its secret, which is never stored or shown again.

        `secret` re-registers a key the caller already holds (the local stack keeps its default key
        across restarts); it must have the shape of a generated key.
        """
        if secret is None:
            key_id, secret = new_api_key()
        else:
            match = _KEY_FORMAT.match(secret)
            if not match:
                raise ValidationError.for_field("api_key", "<redacted>", "is not an Audience API key")
            key_id = match.group(1)
        key = ApiKey(
            id=key_id,
            org_id=org_id,
            name=name,
            prefix=f"{KEY_PREFIX}_{key_id}",
            created_at=clock.now_iso(),
            rate_limit_per_minute=rate_limit_per_minute,
            key_hash=hash_key(secret),
        )
        self._repo.put_key(key)
        return key, secret

    def list_keys(self, org_id: str) -> list[ApiKey]:
        return self._repo.list_keys(org_id)

    def delete_key(self, org_id: str, key_id: str) -> None:
        self._repo.delete_key(org_id, key_id)

    def authenticate(self, api_key: str | None) -> Principal:
        """The principal of a bearer key; AuthenticationError for anything missing, unknown or revoked."""
        if not api_key:
            raise AuthenticationError("missing API key: send Authorization: Bearer <key>")
        match = _KEY_FORMAT.match(api_key)
        if not match:
            raise AuthenticationError("invalid API key")
        key = self._repo.get_key(match.group(1))
        if key is None or not hmac.compare_digest(key.key_hash, hash_key(api_key)):
            raise AuthenticationError("invalid API key")
        return Principal(key.org_id, key.id, key.rate_limit_per_minute or self._default_rate_limit)

    def check_rate(self, principal: Principal, *, now: float | None = None) -> RateWindow:
        """Count one request against the key's per-minute budget; RateLimitedError once it is spent."""
        moment = time.time() if now is None else now
        window = int(moment // RATE_WINDOW_SECONDS)
        reset_in = max(1, int((window + 1) * RATE_WINDOW_SECONDS - moment + 0.999))
        limit = principal.rate_limit_per_minute
        count = self._repo.count_request(principal.key_id, window, limit, expires_at=(window + 2) * RATE_WINDOW_SECONDS)
        if count is None:
            raise RateLimitedError(
                f"rate limit of {limit} requests per minute exceeded", retry_after=reset_in, limit=limit
            )
        return RateWindow(limit=limit, remaining=max(0, limit - count), reset_in=reset_in)

    # -- custom fields ------------------------------------------------------------------------------

    def inbound_settings(self, org_id: str) -> dict[str, Any]:
        self._repo.get_org(org_id)
        return self._repo.get_inbound_settings(org_id)

    def update_inbound_settings(
        self,
        org_id: str,
        *,
        opt_out_keywords: list[str] | None,
        opt_in_keywords: list[str] | None,
        name_capture: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replace the org's own opt-out and/or opt-in keywords (in any language; the defaults STOP,
        UNSUBSCRIBE, ... and START, UNSTOP always apply; a keyword may not be both), and/or its name
        capture settings (audience.inbound.names.check_settings), each only when given."""
        from audience.inbound import names
        from audience.inbound.keywords import MAX_KEYWORD, MAX_KEYWORDS, OPT_IN, OPT_OUT, fold

        current = self.inbound_settings(org_id)
        result = dict(current)
        for name, given in (("opt_out_keywords", opt_out_keywords), ("opt_in_keywords", opt_in_keywords)):
            if given is None:
                continue
            if len(given) > MAX_KEYWORDS:
                raise ValidationError.for_field(name, None, f"at most {MAX_KEYWORDS} keywords")
            words: list[str] = []
            for word in given:
                if not isinstance(word, str) or not fold(word) or len(word) > MAX_KEYWORD:
                    raise ValidationError.for_field(
                        name, word, f"each keyword must be 1 to {MAX_KEYWORD} characters with a letter or digit"
                    )
                if word.strip() not in words:
                    words.append(word.strip())
            result[name] = words
        outs = {fold(w) for w in (*OPT_OUT, *result["opt_out_keywords"])}
        ins = {fold(w) for w in (*OPT_IN, *result["opt_in_keywords"])}
        both = sorted(outs & ins)
        if both:
            raise ValidationError.for_field(
                "opt_in_keywords", both[0], "is an opt-out keyword too; a keyword can only mean one thing"
            )
        if name_capture is not None:
            result["name_capture"] = names.check_settings(name_capture)
        result["updated_at"] = clock.now_iso()
        self._repo.put_inbound_settings(
            org_id,
            {
                "opt_out_keywords": result["opt_out_keywords"],
                "opt_in_keywords": result["opt_in_keywords"],
                "name_capture": result.get("name_capture") or None,
                "updated_at": result["updated_at"],
            },
        )
        return result

    def list_fields(self, org_id: str) -> list[FieldDefinition]:
        return sorted(self._repo.list_fields(org_id), key=lambda f: f.name)

    def create_field(self, org_id: str, name: str, type_: str, label: str | None = None) -> FieldDefinition:
        if not _FIELD_NAME.match(name):
            raise ValidationError.for_field(
                "name", name, "must start with a letter and use only a-z, 0-9 and _ (at most 64 characters)"
            )
        if type_ not in FIELD_TYPES:
            raise ValidationError.for_field("type", type_, f"must be one of {', '.join(FIELD_TYPES)}")
        definition = FieldDefinition(name=name, type=type_, label=label or name, created_at=clock.now_iso())
        self._repo.put_field(org_id, definition)
        return definition

    def delete_field(self, org_id: str, name: str) -> None:
        self._repo.delete_field(org_id, name)
