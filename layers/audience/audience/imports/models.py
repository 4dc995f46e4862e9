"""An import: the uploaded file, its layout and mapping, the dry run's report and the import's progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("contacts", "do_not_contact")

# Statuses, in the order an import moves through them. A dry run and an import are each a "run" over
# the whole file; after a dry run (or a failed or cancelled import) the mapping can change and a new
# run can start.
AWAITING_UPLOAD = "awaiting_upload"
ANALYSING = "analysing"
ANALYSED = "analysed"
VALIDATING = "validating"  # a dry run is running
VALIDATED = "validated"  # a dry run finished; its report is on the import
IMPORTING = "importing"
CANCELLING = "cancelling"
COMPLETED = "completed"
CANCELLED = "cancelled"
FAILED = "failed"  # the file could not be read, or the import stopped on an error
STATUSES: tuple[str, ...] = (
    AWAITING_UPLOAD,
    ANALYSING,
    ANALYSED,
    VALIDATING,
    VALIDATED,
    IMPORTING,
    CANCELLING,
    COMPLETED,
    CANCELLED,
    FAILED,
)
RUNNING = (ANALYSING, VALIDATING, IMPORTING, CANCELLING)
# Statuses from which a new dry run or import may start (the file has been read).
READY = (ANALYSED, VALIDATED, CANCELLED)

DRY_RUN, IMPORT = "dry_run", "import"

# What happened to a data row. `created`, `updated`, `unchanged` and `skipped` rows were imported or
# matched; `duplicate` repeats an identity of an earlier row of the file; `invalid` and `conflict` rows
# were rejected and are in the error report.
CREATED, UPDATED, UNCHANGED, SKIPPED = "created", "updated", "unchanged", "skipped"
DUPLICATE, INVALID, CONFLICT = "duplicate", "invalid", "conflict"
OUTCOMES: tuple[str, ...] = (CREATED, UPDATED, UNCHANGED, SKIPPED, DUPLICATE, INVALID, CONFLICT)
# Counted beside the outcomes: rows whose phone or email is on the do-not-contact list.
DO_NOT_CONTACT = "do_not_contact"

# Import retention: the record, the upload, its chunks and the error report live this long.
RETENTION_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Where one column of the file goes: `target` is full_name, first_name, last_name, email, phone,
    custom_field (with `field`), tag, or skip. DNC imports use identifier, channel, sender, source."""

    index: int
    target: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Mapping:
    columns: list[ColumnMap]
    default_country: str
    existing: str = "update"  # update or skip
    segment_id: str | None = None
    tags: list[str] = field(default_factory=list)
    import_tag: str | None = None  # the tag naming the import and its time, added to every contact

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [
                {"index": c.index, "target": c.target, **({"field": c.field} if c.field else {})} for c in self.columns
            ],
            "default_country": self.default_country,
            "existing": self.existing,
            "segment_id": self.segment_id,
            "tags": list(self.tags),
            "import_tag": self.import_tag,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mapping:
        return cls(
            columns=[ColumnMap(int(c["index"]), c["target"], c.get("field")) for c in data["columns"]],
            default_country=data["default_country"],
            existing=data.get("existing", "update"),
            segment_id=data.get("segment_id"),
            tags=list(data.get("tags") or []),
            import_tag=data.get("import_tag"),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """One pass over the file: a dry run or the import itself."""

    id: str
    kind: str  # dry_run or import
    started_at: str
    rows: int | None = None  # data rows in the file, once the file has been split
    chunks: int | None = None
    finished_at: str | None = None
    # Counts the split decides (invalid, duplicate) and, once finished, the totals of every outcome.
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error_report: str | None = None  # S3 key of the CSV of rejected rows
    consent: dict[str, Any] | None = None  # the import's consent confirmation


@dataclass(frozen=True, slots=True)
class Import:
    id: str
    org_id: str
    kind: str
    status: str
    file_name: str
    created_at: str
    expires_at: int
    size: int | None = None
    object_key: str = ""
    layout: dict[str, Any] | None = None  # audience.imports.files.Layout.to_dict()
    skip_rows: int = 0
    has_header: bool = True
    # What the client asked the analysis to use instead of detecting it: encoding, delimiter, has_header.
    options: dict[str, Any] = field(default_factory=dict)
    columns: list[dict[str, Any]] = field(default_factory=list)  # name, samples, suggested target/field
    mapping: Mapping | None = None
    run: Run | None = None  # the current or last run
    dry_run: Run | None = None  # the last finished dry run, for the mapping it was made with
    error: str | None = None
    version: int = 1
