"""Wiring: services built once per execution environment from validated settings."""

from __future__ import annotations

from functools import cache

from audience.contacts.repository import ContactsRepository
from audience.contacts.service import ContactService
from audience.orgs.repository import OrgsRepository
from audience.orgs.service import OrgService
from audience.settings import get_settings


@cache
def org_service() -> OrgService:
    settings = get_settings()
    return OrgService(
        OrgsRepository(settings.orgs_table),
        default_country=settings.default_country,
        default_rate_limit=settings.rate_limit_per_minute,
    )


@cache
def contact_service() -> ContactService:
    settings = get_settings()
    return ContactService(
        ContactsRepository(settings.contacts_table),
        OrgsRepository(settings.orgs_table),
        default_country=settings.default_country,
    )


def reset() -> None:
    """Forget built services (tests and the local stack call this after changing the environment)."""
    from audience import aws

    get_settings.cache_clear()
    org_service.cache_clear()
    contact_service.cache_clear()
    aws.reset()
