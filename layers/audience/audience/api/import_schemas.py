"""Request and response models of the import routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from audience import clock
from audience.api.schemas import Model, Strict
from audience.imports.models import Import, Run

ImportKind = Literal["contacts", "do_not_contact"]
ImportStatus = Literal[
    "awaiting_upload",
    "analysing",
    "analysed",
    "validating",
    "validated",
    "importing",
    "cancelling",
    "completed",
    "cancelled",
    "failed",
]
Target = Literal[
    "full_name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "custom_field",
    "tag",
    "skip",
    "identifier",
    "channel",
    "sender",
    "source",
]


class CreateImportRequest(Strict):
    file_name: str = Field(max_length=200, description="The file's name; its extension is a hint to its format")
    size: int | None = Field(default=None, description="The file's size in bytes (at most 1 GiB)")
    kind: ImportKind = Field(default="contacts", description="What the rows are: contacts or do-not-contact entries")


class AnalyseRequest(Strict):
    skip_rows: int | None = Field(default=None, description="Rows to skip before the header (0 to 100)")
    has_header: bool | None = Field(default=None, description="Whether the first row names the columns (detected)")
    encoding: str | None = Field(default=None, max_length=20, description="A text encoding, instead of detecting it")
    delimiter: str | None = Field(default=None, max_length=1, description="`,` `;` `|` or a tab, instead of detecting")


class ColumnMapIn(Strict):
    index: int = Field(description="The column's position, from 0")
    target: Target
    field: str | None = Field(default=None, max_length=64, description="For `custom_field`: the field's name")


class MappingRequest(Strict):
    columns: list[ColumnMapIn] = Field(max_length=1000)
    default_country: str | None = Field(
        default=None, max_length=2, description="Reads national phone numbers (the org's default otherwise)"
    )
    existing: Literal["update", "skip"] = Field(
        default="update", description="Contacts already there: update them with the file's values, or leave them"
    )
    segment_id: str | None = Field(default=None, max_length=64, description="A static segment to add every contact to")
    tags: list[str] = Field(default_factory=list, max_length=10, description="Tags to add to every contact")
    import_tag: bool = Field(
        default=True, description="Also tag every contact with `Import {file name} {date} {time}`, naming this import"
    )


class StartRequest(Strict):
    consent_confirmed: bool = Field(
        strict=True,
        description="Must be true: you confirm that every contact in the file agreed to hear from you. "
        "It is recorded as each imported contact's consent proof.",
    )


class UploadForm(Model):
    url: str = Field(description="POST the file here as multipart/form-data, after `fields`, as the field `file`")
    fields: dict[str, str]
    expires_in: int


class ColumnOut(Model):
    index: int
    name: str
    samples: list[str]
    target: str = Field(description="The suggested target")
    field: str | None = None


class Progress(Model):
    run_id: str
    kind: Literal["dry_run", "import"]
    rows_total: int | None = Field(description="Data rows in the file, once it has been read through")
    rows_done: int
    counts: dict[str, int] = Field(
        description="Rows per outcome: created, updated, unchanged, skipped (existing contacts left alone), "
        "duplicate (repeats an earlier row), invalid, conflict; and do_not_contact (rows on the list)"
    )
    started_at: str
    finished_at: str | None


class RunReport(Model):
    counts: dict[str, int]
    samples: dict[str, list[dict[str, Any]]] = Field(description="The first rows of each outcome")
    finished_at: str | None


class ImportOut(Model):
    id: str
    kind: ImportKind
    status: ImportStatus
    file_name: str
    size: int | None
    created_at: str
    expires_at: str
    layout: dict[str, Any] | None = Field(description="Format, encoding, delimiter as read (or given)")
    skip_rows: int
    has_header: bool
    columns: list[ColumnOut]
    mapping: dict[str, Any] | None
    progress: Progress | None = Field(description="The current or last run (dry run or import)")
    dry_run: RunReport | None = Field(description="The last dry run's report, for the current mapping")
    result: str | None = Field(description="Once an import ends: `N contacts imported`")
    error: str | None
    error_report_url: str | None = Field(
        default=None, description="A presigned link (15 minutes) to the CSV of every rejected row with its reason"
    )

    @classmethod
    def of(cls, imp: Import, progress: dict[str, Any] | None = None, report_url: str | None = None) -> ImportOut:
        result = None
        run = imp.run
        if run is not None and run.kind == "import" and run.finished_at:
            imported = run.counts.get("created", 0) + run.counts.get("updated", 0) + run.counts.get("unchanged", 0)
            result = f"{imported} contact{'s' if imported != 1 else ''} imported"
            if imp.kind == "do_not_contact":
                added = run.counts.get("created", 0)
                result = f"{added} do-not-contact entr{'ies' if added != 1 else 'y'} added"
        return cls(
            id=imp.id,
            kind=imp.kind,  # type: ignore[arg-type]
            status=imp.status,  # type: ignore[arg-type]
            file_name=imp.file_name,
            size=imp.size,
            created_at=imp.created_at,
            expires_at=clock.iso(datetime.fromtimestamp(imp.expires_at, UTC)),
            layout=imp.layout,
            skip_rows=imp.skip_rows,
            has_header=imp.has_header,
            columns=[ColumnOut(**c) for c in imp.columns],
            mapping=imp.mapping.to_dict() if imp.mapping else None,
            progress=Progress(**progress) if progress else None,
            dry_run=_report(imp.dry_run),
            result=result,
            error=imp.error,
            error_report_url=report_url,
        )


def _report(run: Run | None) -> RunReport | None:
    if run is None:
        return None
    return RunReport(counts=run.counts, samples=run.samples, finished_at=run.finished_at)


class CreatedImport(Model):
    import_: ImportOut = Field(alias="import", serialization_alias="import")
    upload: UploadForm


class ImportPage(Model):
    items: list[ImportOut]
    next_cursor: str | None
