"""The export worker's wiring, apart from audience.container so that ExportFunction's cold start imports
what exports need and nothing else (the container imports every service of the application).

`audience.container.export_worker()` returns this same worker, and `audience.container.reset()` forgets it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from audience.contacts.service import ContactService
from audience.errors import ConfigurationError
from audience.exports.repository import ExportsRepository
from audience.exports.storage import ExportFiles, ExportJobs
from audience.exports.worker import ExportWorker
from audience.orgs.repository import OrgsRepository
from audience.settings import get_settings

if TYPE_CHECKING:
    from audience.compliance.dnc import DoNotContactService


def resources() -> tuple[ExportFiles, ExportJobs]:
    """The exports bucket and queue; a clear error where a function has no exports settings."""
    settings = get_settings()
    if not settings.exports_bucket or not settings.export_queue_url:
        raise ConfigurationError("EXPORTS_BUCKET and EXPORT_QUEUE_URL are not set; this function cannot run exports")
    return ExportFiles(settings.exports_bucket), ExportJobs(settings.export_queue_url)


@cache
def export_worker() -> ExportWorker:
    settings = get_settings()
    files, jobs = resources()
    contacts = ContactService.from_settings(settings)
    return ExportWorker(
        ExportsRepository(settings.contacts_table),
        files,
        jobs,
        contacts,
        dnc_service,
        OrgsRepository(settings.orgs_table),
    )


@cache
def dnc_service() -> DoNotContactService:
    """Built (and its modules imported) when a do-not-contact export first runs."""
    from audience.compliance.dnc import DoNotContactService
    from audience.compliance.repository import DoNotContactRepository

    settings = get_settings()
    return DoNotContactService(
        DoNotContactRepository(settings.contacts_table),
        OrgsRepository(settings.orgs_table),
        default_country=settings.default_country,
    )


def reset() -> None:
    export_worker.cache_clear()
    dnc_service.cache_clear()
