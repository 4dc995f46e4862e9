"""Request and response models of the do-not-contact, consent, eligibility and export routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from audience import clock
from audience.api.schemas import ChannelName, Model, Status, Strict
from audience.compliance.models import ConsentRecord, Decision, DncEntry
from audience.exports.models import Export
from audience.exports.service import Download

DncSource = Literal["user_message", "campaign_action", "unsubscribe_link", "manual", "import", "bounce", "complaint"]
DncSort = Literal["-added_at", "added_at", "identifier", "-identifier"]
ChannelOrAll = Literal["all", "whatsapp", "messenger", "instagram", "telegram", "webchat", "email", "sms", "custom"]
ConsentChannel = ChannelOrAll
Purpose = Literal["marketing", "transactional"]
Reason = Literal["ok", "blocked", "unsubscribed", "do_not_contact", "opted_out", "no_address"]
ExportKind = Literal["contacts", "do_not_contact"]
ExportStatus = Literal["queued", "running", "done", "failed"]
_DAY = r"^\d{4}-\d{2}-\d{2}"


# -- do-not-contact ---------------------------------------------------------------------------------


class DncEntryIn(Strict):
    identifier: str = Field(
        min_length=1,
        max_length=256,
        description="A phone (any format, read with the org's default country; stored in E.164), an email, "
        "or, with a channel other than whatsapp, sms and email, that channel's user id",
    )
    channel: ChannelName | None = Field(default=None, description="The one channel it applies to; null for all")
    sender: str | None = Field(
        default=None, max_length=128, description="The one sender it applies to (a number id, a from address...)"
    )
    source: DncSource = "manual"


class DncEntryOut(Model):
    id: str
    identifier: str
    identifier_type: str = Field(description="phone, email, or the channel name of a channel user id")
    channel: str | None = Field(description="null: every channel")
    sender: str | None = Field(description="null: every sender")
    source: DncSource
    added_at: str

    @classmethod
    def of(cls, entry: DncEntry) -> DncEntryOut:
        return cls(
            id=entry.id,
            identifier=entry.identifier,
            identifier_type=entry.identifier_type,
            channel=entry.channel,
            sender=entry.sender,
            source=entry.source,  # type: ignore[arg-type]
            added_at=entry.added_at,
        )


class DncPage(Model):
    items: list[DncEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page")


class DncImportError(Model):
    row: int = Field(description="The row as a spreadsheet numbers it: the header is row 1")
    value: Any = Field(description="The rejected value")
    reason: str


class DncImportSummary(Model):
    rows: int
    added: int = Field(description="Entries written (in a dry run: that would be written)")
    existing: int = Field(description="Rows already on the list")
    duplicate: int = Field(description="Rows repeating an earlier row of the file")
    invalid: int


class DncImportResponse(Model):
    dry_run: bool
    summary: DncImportSummary
    errors: list[DncImportError]


# -- consent and eligibility ------------------------------------------------------------------------


class ConsentIn(Strict):
    channel: ConsentChannel = Field(description="A channel, or `all` for every channel")
    opted_in: bool
    source: str = Field(default="api", min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    proof: str = Field(default="", max_length=2000, description="For example the consent statement the user confirmed")
    at: str | None = Field(
        default=None, max_length=40, description="When consent was given or withdrawn (ISO 8601 with a zone); now"
    )


class ConsentOut(Model):
    id: str
    channel: ConsentChannel
    opted_in: bool
    source: str
    proof: str
    at: str
    recorded_at: str

    @classmethod
    def of(cls, record: ConsentRecord) -> ConsentOut:
        return cls(
            id=record.id,
            channel=record.channel,  # type: ignore[arg-type]
            opted_in=record.opted_in,
            source=record.source,
            proof=record.proof,
            at=record.at,
            recorded_at=record.recorded_at,
        )


class ConsentPage(Model):
    items: list[ConsentOut]
    next_cursor: str | None


class EligibilityOut(Model):
    allowed: bool
    reason: Reason = Field(description="`ok`, or the code of the first rule that failed")
    detail: str
    channel: ChannelName
    purpose: Purpose
    sender: str | None

    @classmethod
    def of(cls, decision: Decision, channel: str, purpose: str, sender: str | None) -> EligibilityOut:
        return cls(
            allowed=decision.allowed,
            reason=decision.reason,  # type: ignore[arg-type]
            detail=decision.detail,
            channel=channel,  # type: ignore[arg-type]
            purpose=purpose,  # type: ignore[arg-type]
            sender=sender,
        )


# -- exports ----------------------------------------------------------------------------------------


class ExportFilter(Strict):
    status: Status | None = None
    tag: str | None = Field(default=None, min_length=1, max_length=64)
    channel: ChannelName | None = None
    created_from: str | None = Field(default=None, max_length=40, pattern=_DAY, description="ISO date or date-time")
    created_to: str | None = Field(default=None, max_length=40, pattern=_DAY, description="ISO date or date-time")


class CreateExportRequest(Strict):
    kind: ExportKind
    segment_id: str | None = Field(default=None, max_length=64, description="Contacts: the members of a segment")
    filter: ExportFilter | None = Field(default=None, description="Contacts: the ones this filter keeps")


class ExportOut(Model):
    id: str
    kind: ExportKind
    status: ExportStatus
    segment_id: str | None
    filter: dict[str, str]
    rows: int | None = Field(description="Rows written (without the header), once done")
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str = Field(description="When the export and its file are deleted")
    download_url: str | None = Field(default=None, description="Once done: a presigned GET URL of the CSV file")
    download_expires_at: str | None = None

    @classmethod
    def of(cls, export: Export, download: Download | None = None) -> ExportOut:
        return cls(
            id=export.id,
            kind=export.kind,  # type: ignore[arg-type]
            status=export.status,  # type: ignore[arg-type]
            segment_id=export.segment_id,
            filter=export.filters,
            rows=export.rows,
            error=export.error,
            created_at=export.created_at,
            started_at=export.started_at,
            finished_at=export.finished_at,
            expires_at=clock.iso(datetime.fromtimestamp(export.expires_at, UTC)),
            download_url=download.url if download else None,
            download_expires_at=download.expires_at if download else None,
        )


class ExportPage(Model):
    items: list[ExportOut]
    next_cursor: str | None
