"""The do-not-contact list: add, list (filters, sort), get, remove, import from CSV (with a dry run)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status

from audience import container
from audience.api.compliance_schemas import (
    ChannelOrAll,
    DncEntryIn,
    DncEntryOut,
    DncImportError,
    DncImportResponse,
    DncImportSummary,
    DncPage,
    DncSort,
    DncSource,
)
from audience.api.deps import OrgId
from audience.compliance.dnc import MAX_IMPORT_ROWS, DncFilter, ImportReport
from audience.errors import NotFoundError

router = APIRouter(prefix="/orgs/{org_id}/do-not-contact", tags=["do-not-contact"])
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]
CsvBody = Annotated[
    bytes,
    Body(
        media_type="text/csv",
        description="UTF-8 CSV with a header row: `identifier` (required), `channel`, `sender`, `source`; "
        f"other columns are ignored. At most {MAX_IMPORT_ROWS:,} rows.",
    ),
]
_ENTRY_ID = re.compile(r"^dnc_[0-9a-z]{26}$")


def entry_id(entry_id: Annotated[str, Path(max_length=64)]) -> str:
    """A syntactically valid entry id (anything else cannot exist, so it is not found)."""
    if not _ENTRY_ID.match(entry_id):
        raise NotFoundError(f"do-not-contact entry {entry_id} not found")
    return entry_id


EntryId = Annotated[str, Depends(entry_id)]


def _import_response(report: ImportReport) -> DncImportResponse:
    return DncImportResponse(
        dry_run=report.dry_run,
        summary=DncImportSummary(
            rows=report.rows,
            added=report.added,
            existing=report.existing,
            duplicate=report.duplicate,
            invalid=report.invalid,
        ),
        errors=[DncImportError(**e) for e in report.errors],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DncEntryOut, summary="Add an entry")
def add_entry(org_id: OrgId, body: DncEntryIn, response: Response) -> DncEntryOut:
    """Add contact information to the list, for every channel and sender or only one. An entry that is
    already there (same identifier, channel and sender) is answered as it is, with 200."""
    entry, created = container.dnc_service().add(
        org_id, body.identifier, channel=body.channel, sender=body.sender, source=body.source
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return DncEntryOut.of(entry)


@router.get("", response_model=DncPage, summary="List entries")
def list_entries(
    org_id: OrgId,
    response: Response,
    take: Take = 25,
    cursor: Cursor = None,
    channel: Annotated[
        ChannelOrAll | None, Query(description="A channel's own entries, or `all` for those covering every channel")
    ] = None,
    source: DncSource | None = None,
    sender: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=256, description="Identifier prefix")] = None,
    sort: Annotated[
        DncSort | None, Query(description="Default `-added_at` (newest first); `identifier` with q")
    ] = None,
) -> DncPage:
    """`X-Total-Count` carries the exact total when a maintained counter answers it (no filter, or only
    one of channel, source)."""
    filters = DncFilter(channel=channel, source=source, sender=sender, query=q, sort=sort)
    result = container.dnc_service().list(org_id, filters, cursor=cursor, take=take)
    if result.total is not None:
        response.headers["X-Total-Count"] = str(result.total)
    return DncPage(items=[DncEntryOut.of(e) for e in result.items], next_cursor=result.next_cursor)


@router.post("/import", response_model=DncImportResponse, summary="Import entries from a CSV file")
def import_entries(org_id: OrgId, body: CsvBody) -> DncImportResponse:
    """Each rejected row is reported (row number, value, reason); every other row is added. Rows already
    on the list, or repeating an earlier row, are counted and left as they are. The default source is
    `import`. An export of the list (`POST /exports`, kind `do_not_contact`) imports back unchanged."""
    return _import_response(container.dnc_service().import_csv(org_id, body, dry_run=False))


@router.post("/import/dry-run", response_model=DncImportResponse, summary="Report what an import would do")
def import_entries_dry_run(org_id: OrgId, body: CsvBody) -> DncImportResponse:
    """The same checks as `/import`, writing nothing."""
    return _import_response(container.dnc_service().import_csv(org_id, body, dry_run=True))


@router.get("/{entry_id}", response_model=DncEntryOut, summary="Get an entry")
def get_entry(org_id: OrgId, entry_id: EntryId) -> DncEntryOut:
    return DncEntryOut.of(container.dnc_service().get(org_id, entry_id))


@router.delete("/{entry_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an entry")
def remove_entry(org_id: OrgId, entry_id: EntryId) -> Response:
    container.dnc_service().remove(org_id, entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
