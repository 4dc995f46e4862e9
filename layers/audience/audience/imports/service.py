"""Import use cases for the API: create (presigned upload or a small file in the request), analyse, map,
dry run, import, cancel, follow progress, fetch the error report."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from audience import aws, clock, ids
from audience.contacts.service import check_tags
from audience.errors import ConflictError, NotFoundError, PayloadTooLargeError, ValidationError
from audience.imports import files, models
from audience.imports.mapping import check_mapping
from audience.imports.models import Import, Run
from audience.imports.repository import ImportsRepository, ledger_counts
from audience.imports.storage import ImportFiles, upload_key

MAX_INLINE_BYTES = 5 * 1024 * 1024
_FILE_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,200}$")
_EXTENSIONS = (".csv", ".tsv", ".txt", ".xlsx", ".xls", ".ods", ".zip")
_ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1", "iso-8859-15", "cp1250")
_DELIMITERS = (",", ";", "\t", "|")
MAX_SKIP_ROWS = 100

SAMPLE_CSV = (
    "\ufeffFirst Name,Last Name,Email,Phone,Tags,City\r\n"
    "Sari,Wijaya,sari@example.com,+62 812-3456-7890,vip;newsletter,Jakarta\r\n"
    "José,Müller,jose.muller@example.com,+49 151 23456789,newsletter,Berlin\r\n"
    "Aiko,Tanaka,,+81 90-1234-5678,,Tokyo\r\n"
)


class ImportRunner:
    """Starts the import state machine; a repeated start of the same step is a no-op."""

    def __init__(self, state_machine_arn: str) -> None:
        self._arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> None:
        client = aws.client("stepfunctions")
        with contextlib.suppress(client.exceptions.ExecutionAlreadyExists):
            client.start_execution(stateMachineArn=self._arn, name=name[:80], input=json.dumps(payload))


class ImportService:
    def __init__(
        self,
        imports: ImportsRepository,
        files_: ImportFiles,
        runner: Callable[[], ImportRunner],
        *,
        org_context: Callable[[str], tuple[dict[str, str], str]],
        static_segment: Callable[[str, str], Any],
    ) -> None:
        self._imports = imports
        self._files = files_
        self._runner = runner
        self._org_context = org_context  # custom field name -> type, default country
        self._static_segment = static_segment

    # -- create -------------------------------------------------------------------------------------

    def create(
        self, org_id: str, *, file_name: Any, size: Any, kind: str = "contacts"
    ) -> tuple[Import, dict[str, Any]]:
        """A new import awaiting its upload, and the presigned form to upload the file with (S3 refuses
        anything over 1 GiB); then call `analyse`."""
        name = _file_name(file_name)
        _kind(kind)
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValidationError.for_field("size", size, "must be the file's size in bytes")
            if size > files.MAX_FILE_BYTES:
                raise PayloadTooLargeError(f"the file is {size} bytes; an import takes at most {files.MAX_FILE_BYTES}")
        imp = self._new(org_id, name, kind, models.AWAITING_UPLOAD, size)
        self._imports.create(imp)
        return imp, self._files.upload_form(imp.object_key, max_bytes=files.MAX_FILE_BYTES)

    def upload(self, org_id: str, *, file_name: Any, data: bytes, kind: str = "contacts") -> Import:
        """A new import of a small file sent in the request; its analysis starts at once."""
        name = _file_name(file_name)
        _kind(kind)
        if len(data) > MAX_INLINE_BYTES:
            raise PayloadTooLargeError(
                f"the file is {len(data)} bytes; send at most {MAX_INLINE_BYTES} in the request, or use an upload URL"
            )
        if not data:
            raise ValidationError.for_field("file", "", "the file is empty")
        imp = self._new(org_id, name, kind, models.ANALYSING, len(data))
        self._files.put(imp.object_key, data)
        self._imports.create(imp)
        self._start(imp, "analyse")
        return imp

    def _new(self, org_id: str, name: str, kind: str, status: str, size: int | None) -> Import:
        import_id = ids.new_id("imp")
        return Import(
            id=import_id,
            org_id=org_id,
            kind=kind,
            status=status,
            file_name=name,
            created_at=clock.now_iso(),
            expires_at=int(time.time()) + models.RETENTION_SECONDS,
            size=size,
            object_key=upload_key(org_id, import_id),
        )

    # -- analyse, map -------------------------------------------------------------------------------

    def analyse(self, org_id: str, import_id: str, options: dict[str, Any]) -> Import:
        """(Re-)read the file's layout, header and columns, optionally with rows to skip, an encoding,
        a delimiter or whether the first row is a header; runs in the background (status `analysing`)."""
        checked = _options(options)

        def change(imp: Import) -> Import:
            allowed = (models.AWAITING_UPLOAD, models.ANALYSED, models.VALIDATED, models.CANCELLED, models.FAILED)
            if imp.status not in allowed or (imp.status == models.FAILED and imp.run is not None):
                raise _conflict(imp, "analyse")
            skip = checked.pop("skip_rows", imp.skip_rows)
            return replace(
                imp, status=models.ANALYSING, skip_rows=skip, options=checked, error=None, mapping=None, dry_run=None
            )

        imp = self._mutate(org_id, import_id, change)
        self._start(imp, "analyse")
        return imp

    def set_mapping(self, org_id: str, import_id: str, data: dict[str, Any]) -> Import:
        """Check and keep the mapping; a dry run made with another mapping no longer counts."""
        current = self._imports.get(org_id, import_id)
        if not _ready(current):
            raise _conflict(current, "map")
        field_types, country = self._org_context(org_id)
        mapping = check_mapping(
            data,
            kind=current.kind,
            width=len(current.columns),
            custom_fields=field_types,
            default_country=country,
        )
        if mapping.segment_id is not None:
            if current.kind != "contacts":
                raise ValidationError.for_field(
                    "segment_id", mapping.segment_id, "only contact imports add to a segment"
                )
            self._static_segment(org_id, mapping.segment_id)
        tags = check_tags(mapping.tags) if mapping.tags else []
        import_tag = None
        if current.kind == "contacts" and data.get("import_tag", True) is not False:
            import_tag = import_tag_for(current)
        mapping = replace(mapping, tags=tags, import_tag=import_tag)

        def change(imp: Import) -> Import:
            if not _ready(imp):
                raise _conflict(imp, "map")
            return replace(imp, mapping=mapping, status=models.ANALYSED, dry_run=None)

        return self._mutate(org_id, import_id, change)

    # -- runs ---------------------------------------------------------------------------------------

    def dry_run(self, org_id: str, import_id: str) -> Import:
        return self._begin(org_id, import_id, models.DRY_RUN, None)

    def start(self, org_id: str, import_id: str, *, consent_confirmed: Any, confirmed_by: str | None) -> Import:
        if consent_confirmed is not True:
            raise ValidationError.for_field(
                "consent_confirmed",
                consent_confirmed,
                "must be true: confirm that every contact in the file agreed to hear from you",
            )
        consent = {"confirmed": True, "at": clock.now_iso(), "confirmed_by": confirmed_by or ""}
        return self._begin(org_id, import_id, models.IMPORT, consent)

    def _begin(self, org_id: str, import_id: str, kind: str, consent: dict[str, Any] | None) -> Import:
        action = "dry run" if kind == models.DRY_RUN else "import"

        def change(imp: Import) -> Import:
            if not _ready(imp):
                raise _conflict(imp, action)
            if imp.mapping is None:
                raise ConflictError(f"import {imp.id} has no mapping yet: set one with PUT .../mapping first")
            run = Run(id=ids.new_id("run"), kind=kind, started_at=clock.now_iso(), consent=consent)
            status = models.VALIDATING if kind == models.DRY_RUN else models.IMPORTING
            return replace(imp, status=status, run=run, error=None)

        imp = self._mutate(org_id, import_id, change)
        assert imp.run is not None
        self._start(imp, "run")
        return imp

    def cancel(self, org_id: str, import_id: str) -> Import:
        """Stop a running dry run or import after the rows in flight; rows written stay written."""

        def change(imp: Import) -> Import:
            if imp.status == models.CANCELLING:
                return imp
            if imp.status not in (models.VALIDATING, models.IMPORTING):
                raise _conflict(imp, "cancel")
            return replace(imp, status=models.CANCELLING)

        return self._mutate(org_id, import_id, change)

    # -- reads --------------------------------------------------------------------------------------

    def get(self, org_id: str, import_id: str) -> tuple[Import, dict[str, Any] | None, str | None]:
        """The import, the progress of its current run (None before any run) and a fresh link to the
        run's error report (None when no row was rejected, or before the run ends)."""
        imp = self._imports.get(org_id, import_id)
        if imp.expires_at <= time.time():
            raise NotFoundError(f"import {import_id} not found")
        run = imp.run
        if run is None:
            return imp, None, None
        counts = dict(run.counts)
        if run.finished_at is None:
            totals: dict[str, int] = dict(counts)
            for ledger in self._imports.ledgers(org_id, import_id, run.id):
                for name, value in ledger_counts(ledger).items():
                    totals[name] = totals.get(name, 0) + value
            counts = totals
        done = sum(v for k, v in counts.items() if k in models.OUTCOMES)
        progress = {
            "run_id": run.id,
            "kind": run.kind,
            "rows_total": run.rows,
            "rows_done": done,
            "counts": {k: counts.get(k, 0) for k in (*models.OUTCOMES, models.DO_NOT_CONTACT)},
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
        url = self._files.url(run.error_report) if run.error_report else None
        return imp, progress, url

    def list(self, org_id: str, *, cursor: str | None, take: int) -> tuple[list[Import], str | None]:
        if cursor is not None and not re.fullmatch(r"imp_[0-9a-z]{26}", cursor):
            raise ValidationError.for_field("cursor", cursor, "is not a cursor this list returned")
        found, next_cursor = self._imports.page(org_id, after=cursor, limit=take)
        now = time.time()
        return [i for i in found if i.expires_at > now], next_cursor

    # -- helpers ------------------------------------------------------------------------------------

    def _start(self, imp: Import, step: str) -> None:
        payload: dict[str, Any] = {"org_id": imp.org_id, "import_id": imp.id, "action": step}
        name = f"{imp.id}-analyse-v{imp.version}"
        if step == "run":
            assert imp.run is not None
            payload["run_id"] = imp.run.id
            name = f"{imp.id}-{imp.run.id}"
        self._runner().start(name, payload)

    def _mutate(self, org_id: str, import_id: str, change: Callable[[Import], Import]) -> Import:
        for _ in range(5):
            current = self._imports.get(org_id, import_id)
            if current.expires_at <= time.time():
                raise NotFoundError(f"import {import_id} not found")
            updated = change(current)
            if updated is current:
                return current
            updated = replace(updated, version=current.version + 1)
            try:
                return self._imports.replace(updated, expected_version=current.version)
            except ConflictError:
                continue
        raise ConflictError(f"import {import_id} is being changed by others; retry")


def import_tag_for(imp: Import) -> str:
    """The tag naming an import and its time: `Import contacts 2026-11-23 10:30` (at most 64 characters)."""
    stem = " ".join(os.path.splitext(imp.file_name)[0].split())[:40]
    return f"Import {stem} {imp.created_at[:16].replace('T', ' ')}".replace("  ", " ")


def _ready(imp: Import) -> bool:
    """Whether the file has been read and no run is going: a failed import may be run again."""
    return imp.status in models.READY or (imp.status == models.FAILED and bool(imp.columns))


def _file_name(value: Any) -> str:
    if not isinstance(value, str) or not _FILE_NAME.match(value.strip()):
        raise ValidationError.for_field("file_name", value, "must be a file name of 1 to 200 characters")
    name = value.strip()
    if not name.lower().endswith(_EXTENSIONS):
        raise ValidationError.for_field("file_name", value, f"must end in one of {', '.join(_EXTENSIONS)}")
    return name


def _kind(kind: str) -> None:
    if kind not in models.KINDS:
        raise ValidationError.for_field("kind", kind, f"must be one of {', '.join(models.KINDS)}")


def _options(options: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    skip = options.get("skip_rows")
    if skip is not None:
        if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip <= MAX_SKIP_ROWS:
            raise ValidationError.for_field("skip_rows", skip, f"must be a number of rows from 0 to {MAX_SKIP_ROWS}")
        checked["skip_rows"] = skip
    encoding = options.get("encoding")
    if encoding is not None:
        if encoding not in _ENCODINGS:
            raise ValidationError.for_field("encoding", encoding, f"must be one of {', '.join(_ENCODINGS)}")
        checked["encoding"] = encoding
    delimiter = options.get("delimiter")
    if delimiter is not None:
        if delimiter not in _DELIMITERS:
            raise ValidationError.for_field("delimiter", delimiter, "must be one of , ; | or a tab")
        checked["delimiter"] = delimiter
    has_header = options.get("has_header")
    if has_header is not None:
        if not isinstance(has_header, bool):
            raise ValidationError.for_field("has_header", has_header, "must be true or false")
        checked["has_header"] = has_header
    return checked


def _conflict(imp: Import, action: str) -> ConflictError:
    hint = {
        models.AWAITING_UPLOAD: "upload the file and analyse it first",
        models.ANALYSING: "wait until the analysis ends",
        models.VALIDATING: "wait until the dry run ends, or cancel it",
        models.IMPORTING: "wait until the import ends, or cancel it",
        models.CANCELLING: "it is being cancelled",
        models.COMPLETED: "it is complete; create a new import to import again",
        models.FAILED: "it failed; see `error`",
    }.get(imp.status, "")
    return ConflictError(f"cannot {action} import {imp.id} while it is {imp.status}" + (f": {hint}" if hint else ""))
