"""The import worker's and service's wiring, apart from audience.container so that ImportFunction's
cold start imports what imports need (no web framework, no segment engine beyond its models).

`audience.container.import_service()` builds the API side from the same pieces, and
`audience.container.reset()` forgets them.
"""

from __future__ import annotations

from functools import cache

from audience.compliance.repository import DoNotContactRepository
from audience.contacts.models import Contact
from audience.contacts.repository import ContactsRepository
from audience.contacts.service import ContactService
from audience.errors import ConfigurationError
from audience.imports.repository import ImportsRepository
from audience.imports.service import ImportRunner
from audience.imports.storage import ImportFiles
from audience.imports.worker import ChunkWriter, ImportWorker
from audience.imports.writer import ContactChunkWriter, DncChunkWriter
from audience.orgs.repository import OrgsRepository
from audience.segments.models import Segment
from audience.settings import get_settings


def files() -> ImportFiles:
    bucket = get_settings().imports_bucket
    if not bucket:
        raise ConfigurationError("IMPORTS_BUCKET is not set; this function cannot run imports")
    return ImportFiles(bucket)


@cache
def runner() -> ImportRunner:
    arn = get_settings().import_state_machine
    if not arn:
        raise ConfigurationError("IMPORT_STATE_MACHINE is not set; this function cannot start imports")
    return ImportRunner(arn)


@cache
def contact_service() -> ContactService:
    settings = get_settings()
    return ContactService.from_settings(settings)


def field_types(org_id: str) -> dict[str, str]:
    """The org's custom fields: name -> type."""
    return {f.name: f.type for f in OrgsRepository(get_settings().orgs_table).list_fields(org_id)}


def org_context(org_id: str) -> tuple[dict[str, str], str]:
    """The org's custom field types and its default country."""
    fields, country = contact_service().org_context(org_id)
    return {name: f.type for name, f in fields.items()}, country


def static_segment(org_id: str, segment_id: str) -> Segment:
    """The static segment an import adds its contacts to; ValidationError when it is not one."""
    from audience.errors import ValidationError
    from audience.segments.models import STATIC
    from audience.segments.repository import SegmentsRepository

    segment = SegmentsRepository(get_settings().contacts_table).get_segment(org_id, segment_id)
    if segment.type != STATIC:
        raise ValidationError.for_field("segment_id", segment_id, "is a dynamic segment: its members follow its rules")
    return segment


def assign_segment(org_id: str, segment: Segment, contact: Contact) -> None:
    """Add an existing contact to the import's static segment (a replay changes nothing)."""
    from audience.errors import ValidationError
    from audience.segments.models import BY_CLIENT, MembershipChange
    from audience.segments.repository import STALE_SEGMENT, Guard, SegmentsRepository

    change = MembershipChange(segment.id, contact.id, contact.created_at, True, BY_CLIENT)
    result = SegmentsRepository(get_settings().contacts_table).write_membership(org_id, change, Guard(), static=True)
    if result == STALE_SEGMENT:
        raise ValidationError(f"segment {segment.id} was deleted or changed while the import ran; the import stopped")


@cache
def writer(kind: str) -> ChunkWriter:
    settings = get_settings()
    if kind == "do_not_contact":
        return DncChunkWriter(DoNotContactRepository(settings.contacts_table))
    return ContactChunkWriter(
        ContactsRepository(settings.contacts_table),
        contact_service(),
        ImportsRepository(settings.contacts_table),
        DoNotContactRepository(settings.contacts_table),
        segment_writer=assign_segment,
        segment_loader=static_segment,
    )


@cache
def import_worker() -> ImportWorker:
    return ImportWorker(
        ImportsRepository(get_settings().contacts_table), files(), writers=writer, field_types=field_types
    )


def reset() -> None:
    runner.cache_clear()
    contact_service.cache_clear()
    writer.cache_clear()
    import_worker.cache_clear()
