"""Exports: request a CSV export (contacts, or the do-not-contact list), follow it, download it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from audience import container
from audience.api.compliance_schemas import CreateExportRequest, ExportOut, ExportPage
from audience.api.deps import OrgId

router = APIRouter(prefix="/orgs/{org_id}/exports", tags=["exports"])
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ExportOut, summary="Request an export")
def request_export(org_id: OrgId, body: CreateExportRequest, response: Response) -> ExportOut:
    """Queue a CSV export of the org's contacts (all of them, a segment's members with `segment_id`, or
    those `filter` keeps) or of its do-not-contact list. Follow it at `Location`; once `done` it carries a
    download link. Files are UTF-8 with a BOM, RFC 4180 quoted, with spreadsheet formulas neutralised (a
    cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`, phones included), and are kept 7 days."""
    filters = body.filter.model_dump(exclude_none=True) if body.filter else None
    export = container.export_service().request(org_id, body.kind, segment_id=body.segment_id, filters=filters)
    response.headers["Location"] = f"/orgs/{org_id}/exports/{export.id}"
    return ExportOut.of(export)


@router.get("", response_model=ExportPage, summary="Recent exports, newest first")
def list_exports(org_id: OrgId, take: Take = 25, cursor: Cursor = None) -> ExportPage:
    """Exports of the last 7 days (download links are given by `GET /exports/{export_id}`)."""
    exports, next_cursor = container.export_service().list(org_id, cursor=cursor, take=take)
    return ExportPage(items=[ExportOut.of(e) for e in exports], next_cursor=next_cursor)


@router.get("/{export_id}", response_model=ExportOut, summary="An export, with a download link once done")
def get_export(org_id: OrgId, export_id: Annotated[str, Path(max_length=64)]) -> ExportOut:
    """Status (`queued`, `running`, `done`, `failed`), rows, and when done a fresh presigned download URL
    valid 15 minutes (ask again for a new one)."""
    export, download = container.export_service().get(org_id, export_id)
    return ExportOut.of(export, download)
