"""Export requests: validate, record, queue; then report progress and hand out download links."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from audience import clock, ids
from audience.contacts.repository import decode_cursor, encode_cursor
from audience.contacts.service import ContactService, ListFilter
from audience.errors import NotFoundError, ValidationError
from audience.exports.models import DONE, FILTER_FIELDS, KINDS, QUEUED, RETENTION_SECONDS, Export
from audience.exports.repository import ExportsRepository
from audience.exports.storage import URL_EXPIRES_SECONDS, ExportFiles, ExportJobs, object_key

_EXPORT_ID = re.compile(r"^exp_[0-9a-z]{26}$")


@dataclass(frozen=True, slots=True)
class Download:
    url: str
    expires_at: str


class ExportService:
    """Exports of an org; every method takes the org id the caller is authorised for."""

    def __init__(
        self,
        exports: ExportsRepository,
        files: ExportFiles,
        jobs: ExportJobs,
        contacts: ContactService,
        segments: Callable[[str, str], Any] | None = None,
    ) -> None:
        """`segments(org_id, segment_id)` raises NotFoundError when the org has no such segment."""
        self._exports = exports
        self._files = files
        self._jobs = jobs
        self._contacts = contacts
        self._segments = segments

    def request(
        self, org_id: str, kind: str, *, segment_id: str | None = None, filters: Mapping[str, Any] | None = None
    ) -> Export:
        """Queue an export of the org's contacts (all, a segment's members, or those a filter keeps) or of
        its do-not-contact list. Filters and the segment are checked now, so a bad one is a 422 or a 404
        here rather than a failed export later."""
        if kind not in KINDS:
            raise ValidationError.for_field("kind", kind, f"must be one of {', '.join(KINDS)}")
        given = {name: value for name, value in (filters or {}).items() if value is not None}
        unknown = sorted(set(given) - set(FILTER_FIELDS))
        if unknown:
            raise ValidationError.for_field(f"filter.{unknown[0]}", given[unknown[0]], "is not a contact filter")
        if kind == "do_not_contact" and (segment_id or given):
            raise ValidationError.for_field(
                "segment_id" if segment_id else "filter", segment_id, "a do-not-contact export lists every entry"
            )
        if kind == "contacts":
            if segment_id is not None:
                if self._segments is None:
                    raise ValidationError.for_field("segment_id", segment_id, "segments are not available")
                self._segments(org_id, segment_id)
            # One row read with the same filter: the contact service's own checks answer for the values.
            self._contacts.list(org_id, ListFilter(**given, segment=segment_id), cursor=None, take=1)
        now = clock.now()
        export_id = ids.new_id("exp")
        export = Export(
            id=export_id,
            org_id=org_id,
            kind=kind,
            status=QUEUED,
            created_at=clock.iso(now),
            expires_at=int(now.timestamp()) + RETENTION_SECONDS,
            segment_id=segment_id,
            filters={k: str(v) for k, v in given.items()},
            object_key=object_key(org_id, export_id),
        )
        self._exports.create(export)
        try:
            self._jobs.send({"org_id": org_id, "export_id": export_id})
        except Exception:
            self._exports.fail(org_id, export_id, error="the export could not be queued", now=clock.now_iso())
            raise
        return export

    def get(self, org_id: str, export_id: str) -> tuple[Export, Download | None]:
        """An export and, once done, a fresh download link (valid 15 minutes)."""
        export = self._exports.get(org_id, export_id) if _EXPORT_ID.match(export_id) else None
        if export is None:
            raise NotFoundError(f"export {export_id} not found")
        download = None
        if export.status == DONE and export.object_key:
            expires = clock.iso(clock.now() + timedelta(seconds=URL_EXPIRES_SECONDS))
            download = Download(self._files.url(export.object_key, expires_in=URL_EXPIRES_SECONDS), expires)
        return export, download

    def list(self, org_id: str, *, cursor: str | None, take: int) -> tuple[list[Export], str | None]:
        """The org's exports of the last 7 days, newest first."""
        after = decode_cursor(cursor, _EXPORT_ID)
        exports, last = self._exports.page(org_id, after=after, limit=take)
        return exports, encode_cursor(last) if last else None
