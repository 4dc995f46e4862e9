"""Runs an export: pages through the rows, streams the CSV to S3 in parts, and hands over before time runs out.

A run reads 100 rows at a time (the contact service's list, or the do-not-contact list) and buffers the
CSV; every 8 MiB becomes a part of a multipart upload, so memory holds one part whatever the file's size.
A small file is put whole. A million contacts take longer than one Lambda invocation may run, so when
time gets short the run stops at a part boundary, saves a checkpoint (cursor, rows, upload id, parts) on
the export and queues a continuation, which claims the next step and goes on from there.

Delivery is at least once, so every message is checked against the export first:
- a done or failed export is left alone;
- a start message (no run) always starts from scratch: a new run, the earlier run's upload aborted, the
  file rewritten under the same key (this is what a redelivery after a failed attempt does);
- a continuation runs only if its run is still the export's and it wins the claim of the next step, so a
  duplicate or superseded continuation does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from audience import clock, ids
from audience.contacts.models import Contact
from audience.contacts.service import ContactService, ListFilter
from audience.errors import NotFoundError, ValidationError
from audience.exports.csvfile import CsvWriter
from audience.exports.models import DONE, FAILED, RUNNING, Checkpoint, Export
from audience.exports.repository import ExportsRepository
from audience.exports.storage import ExportFiles, ExportJobs, object_key
from audience.orgs.repository import OrgsRepository

if TYPE_CHECKING:  # the do-not-contact modules are imported when a do-not-contact export runs
    from audience.compliance.dnc import DoNotContactService
    from audience.compliance.models import DncEntry

PAGE_SIZE = 100
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
CONTACT_COLUMNS: tuple[str, ...] = (
    "id",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "country",
    "status",
    "channels",
    "tags",
)
CONTACT_TRAILING: tuple[str, ...] = ("created_at", "updated_at")
CUSTOM_PREFIX = "custom_fields."
DNC_COLUMNS: tuple[str, ...] = ("id", "identifier", "identifier_type", "channel", "sender", "source", "added_at")


class InvalidMessageError(ValueError):
    """An export queue message without an org id and export id; it is retried, then dead-lettered."""


def contact_row(contact: Contact, fields: list[str]) -> list[str]:
    """A contact as CSV cells: lists joined with `; `, a channel as `channel:user_id`, custom fields by name."""
    return [
        contact.id,
        contact.first_name or "",
        contact.last_name or "",
        contact.display_name() or "",
        contact.email or "",
        contact.phone or "",
        contact.country or "",
        contact.status,
        "; ".join(f"{c['channel']}:{c['user_id']}" for c in contact.channels),
        "; ".join(contact.tags),
        *(_cell(contact.custom_fields.get(name)) for name in fields),
        contact.created_at,
        contact.updated_at,
    ]


def dnc_row(entry: DncEntry) -> list[str]:
    return [
        entry.id,
        entry.identifier,
        entry.identifier_type,
        entry.channel or "",
        entry.sender or "",
        entry.source,
        entry.added_at,
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def parse_message(message: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(org id, export id, run or None) of an export queue message."""
    if not isinstance(message, Mapping):
        raise InvalidMessageError(f"not an export message: {message!r:.200}")
    org_id, export_id, run = message.get("org_id"), message.get("export_id"), message.get("run")
    if not isinstance(org_id, str) or not isinstance(export_id, str) or not (run is None or isinstance(run, str)):
        raise InvalidMessageError(f"not an export message: {dict(message)!r:.200}")
    return org_id, export_id, run


class ExportWorker:
    """Runs the exports the export queue names."""

    def __init__(
        self,
        exports: ExportsRepository,
        files: ExportFiles,
        jobs: ExportJobs,
        contacts: ContactService,
        dnc: Callable[[], DoNotContactService],
        orgs: OrgsRepository,
        *,
        part_size: int = PART_SIZE,
        min_part_size: int = MIN_PART_SIZE,
        soft_margin_ms: int = 90_000,
        hard_margin_ms: int = 20_000,
    ) -> None:
        """`dnc` gives the do-not-contact service (built on first use: only those exports need it). With less
        than `soft_margin_ms` left, a run hands over at the next part boundary; with less than
        `hard_margin_ms`, at the last one (rows read since are read again by the continuation)."""
        self._exports = exports
        self._files = files
        self._jobs = jobs
        self._contacts = contacts
        self._dnc = dnc
        self._orgs = orgs
        self._part_size = part_size
        self._min_part_size = min(min_part_size, part_size)
        self._soft_margin_ms = soft_margin_ms
        self._hard_margin_ms = hard_margin_ms

    def process(self, message: Mapping[str, Any], time_left_ms: Callable[[], int]) -> str:
        """Run (or go on with) the export a message names. Returns what happened: done, continued,
        failed (a filter or segment that no longer holds), skipped (already finished), stale (another
        run owns it) or missing (expired). Anything else raised is worth a retry."""
        org_id, export_id, run_id = parse_message(message)
        export = self._exports.get(org_id, export_id)
        if export is None:
            return "missing"
        if export.status in (DONE, FAILED):
            return "skipped"
        if run_id is None:
            run_id = ids.ulid()
            columns = self._columns(export)
            before = self._exports.start(org_id, export_id, run=run_id, columns=columns, now=clock.now_iso())
            if before is None:
                return "skipped"
            if before.checkpoint is not None and before.checkpoint.upload_id:
                self._files.abort(self._key(export), before.checkpoint.upload_id)
            step, start = 1, Checkpoint()
        else:
            if export.run != run_id or export.status != RUNNING:
                return "stale"
            if not self._exports.claim(org_id, export_id, run=run_id, step=export.step):
                return "stale"
            step, columns, start = export.step + 1, export.columns, export.checkpoint or Checkpoint()
        try:
            return self._write(export, run_id, step, columns, start, time_left_ms)
        except (ValidationError, NotFoundError) as error:
            self._exports.fail(org_id, export_id, error=error.message, now=clock.now_iso(), run=run_id)
            return "failed"

    def give_up(self, message: Mapping[str, Any], reason: str) -> None:
        """Mark the export failed after its last delivery attempt (the message then goes to the DLQ)."""
        org_id, export_id, _ = parse_message(message)
        before = self._exports.fail(org_id, export_id, error=reason, now=clock.now_iso())
        if before is not None and before.checkpoint is not None and before.checkpoint.upload_id:
            self._files.abort(self._key(before), before.checkpoint.upload_id)

    # -- internals ----------------------------------------------------------------------------------

    def _key(self, export: Export) -> str:
        return export.object_key or object_key(export.org_id, export.id)

    def _columns(self, export: Export) -> list[str]:
        """The header, fixed for the whole run: custom fields declared later do not shift the columns."""
        if export.kind == "do_not_contact":
            return list(DNC_COLUMNS)
        fields = sorted(f.name for f in self._orgs.list_fields(export.org_id))
        return [*CONTACT_COLUMNS, *(CUSTOM_PREFIX + name for name in fields), *CONTACT_TRAILING]

    def _page(self, export: Export, fields: list[str], cursor: str | None) -> tuple[list[list[str]], str | None]:
        if export.kind == "do_not_contact":
            from audience.compliance.dnc import DncFilter

            entries = self._dnc().list(export.org_id, DncFilter(sort="-added_at"), cursor=cursor, take=PAGE_SIZE)
            return [dnc_row(e) for e in entries.items], entries.next_cursor
        filters = ListFilter(**export.filters, segment=export.segment_id)
        contacts = self._contacts.list(export.org_id, filters, cursor=cursor, take=PAGE_SIZE)
        return [contact_row(c, fields) for c in contacts.items], contacts.next_cursor

    def _write(
        self,
        export: Export,
        run: str,
        step: int,
        columns: list[str],
        start: Checkpoint,
        time_left_ms: Callable[[], int],
    ) -> str:
        """Write from `start` on; the run's step `step` owns the export meanwhile."""
        key = self._key(export)
        filename = f"{export.kind.replace('_', '-')}-{export.id}.csv"
        fields = [c.removeprefix(CUSTOM_PREFIX) for c in columns if c.startswith(CUSTOM_PREFIX)]
        upload_id, parts = start.upload_id, list(start.parts)
        cursor, rows = start.cursor, start.rows
        boundary = Checkpoint(cursor, rows, upload_id, list(parts))  # what a continuation would go on from
        writer = CsvWriter(bom=not parts)
        if not parts:
            writer.writerow(columns)
        while True:
            page, cursor = self._page(export, fields, cursor)
            for row in page:
                writer.writerow(row)
            rows += len(page)
            if cursor is None:
                break
            left = time_left_ms()
            if writer.size >= self._part_size or (left < self._soft_margin_ms and writer.size >= self._min_part_size):
                upload_id = upload_id or self._files.begin(key, filename=filename)
                parts.append(
                    {"n": len(parts) + 1, "etag": self._files.part(key, upload_id, len(parts) + 1, writer.take())}
                )
                boundary = Checkpoint(cursor, rows, upload_id, list(parts))
            if left < self._hard_margin_ms or (left < self._soft_margin_ms and boundary.cursor == cursor):
                return self._hand_over(export, run, step, boundary)
        data = writer.take()
        if upload_id is None:
            self._files.put(key, data, filename=filename)
        else:
            if data:
                parts.append({"n": len(parts) + 1, "etag": self._files.part(key, upload_id, len(parts) + 1, data)})
            self._files.complete(key, upload_id, parts)
        finished = self._exports.finish(
            export.org_id, export.id, run=run, step=step, rows=rows, key=key, now=clock.now_iso()
        )
        return "done" if finished else "stale"

    def _hand_over(self, export: Export, run: str, step: int, boundary: Checkpoint) -> str:
        saved = self._exports.checkpoint(export.org_id, export.id, run=run, step=step, checkpoint=boundary)
        if not saved:
            return "stale"
        self._jobs.send({"org_id": export.org_id, "export_id": export.id, "run": run})
        return "continued"
