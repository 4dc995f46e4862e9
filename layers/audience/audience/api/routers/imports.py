"""Imports: upload a CSV, TSV, TXT, XLSX, XLS, ODS or ZIP file, map its columns, dry-run it, import it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from audience import container
from audience.api.deps import OrgId, principal
from audience.api.import_schemas import (
    AnalyseRequest,
    CreatedImport,
    CreateImportRequest,
    ImportKind,
    ImportOut,
    ImportPage,
    MappingRequest,
    StartRequest,
    UploadForm,
)
from audience.orgs.models import Principal

router = APIRouter(prefix="/orgs/{org_id}/imports", tags=["imports"])
ImportId = Annotated[str, Path(max_length=64)]
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page")]


def _out(org_id: str, import_id: str) -> ImportOut:
    imp, progress, url = container.import_service().get(org_id, import_id)
    return ImportOut.of(imp, progress, url)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CreatedImport, summary="Create an import")
def create_import(org_id: OrgId, body: CreateImportRequest, response: Response) -> CreatedImport:
    """Create an import and get a presigned form to upload its file to (up to 1 GiB; S3 refuses more).
    POST the file to `upload.url` as multipart/form-data with every entry of `upload.fields` first and the
    file last as `file`; then call `POST /imports/{import_id}/analyse`. A file of up to 5 MB can be sent
    in the request instead: `POST /imports/file`."""
    imp, form = container.import_service().create(org_id, file_name=body.file_name, size=body.size, kind=body.kind)
    response.headers["Location"] = f"/orgs/{org_id}/imports/{imp.id}"
    return CreatedImport(**{"import": ImportOut.of(imp)}, upload=UploadForm(**form))


@router.post(
    "/file",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportOut,
    summary="Import a small file sent in the request",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_import(
    org_id: OrgId,
    request: Request,
    response: Response,
    file_name: Annotated[str, Query(max_length=200, description="The file's name, with its extension")],
    kind: Annotated[ImportKind, Query(description="contacts or do_not_contact")] = "contacts",
) -> ImportOut:
    """Send the file itself as the body (any content type, at most 5 MB; 413 beyond). Its analysis starts
    at once: follow the import until it is `analysed`, then map its columns."""
    data = await request.body()
    imp = container.import_service().upload(org_id, file_name=file_name, data=data, kind=kind)
    response.headers["Location"] = f"/orgs/{org_id}/imports/{imp.id}"
    return ImportOut.of(imp)


@router.get("", response_model=ImportPage, summary="Imports, newest first")
def list_imports(org_id: OrgId, take: Take = 25, cursor: Cursor = None) -> ImportPage:
    found, next_cursor = container.import_service().list(org_id, cursor=cursor, take=take)
    return ImportPage(items=[ImportOut.of(i) for i in found], next_cursor=next_cursor)


@router.get("/sample.csv", summary="A sample file", response_class=Response)
def sample_file(org_id: OrgId) -> Response:
    """A small CSV with the columns an import recognises by name."""
    from audience.imports.service import SAMPLE_CSV

    return Response(
        SAMPLE_CSV.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audience-sample.csv"'},
    )


@router.get("/{import_id}", response_model=ImportOut, summary="An import, with its columns, progress and result")
def get_import(org_id: OrgId, import_id: ImportId) -> ImportOut:
    """Status, the columns found with their sample values and suggested targets, the mapping, the dry
    run's report, the progress of the current run (rows done of the total, per outcome) and, once a run
    has rejected rows, a link to the CSV of every rejected row with its reason."""
    return _out(org_id, import_id)


@router.post(
    "/{import_id}/analyse", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut, summary="Analyse the file"
)
def analyse_import(org_id: OrgId, import_id: ImportId, body: AnalyseRequest | None = None) -> ImportOut:
    """Detect the format, encoding, delimiter and header row (or use the ones given) and list the columns
    with sample values and suggested targets. Runs in the background: follow the import until `analysed`
    (or `failed`, with `error` saying what is wrong with the file)."""
    options = body.model_dump(exclude_none=True) if body else {}
    container.import_service().analyse(org_id, import_id, options)
    return _out(org_id, import_id)


@router.put("/{import_id}/mapping", response_model=ImportOut, summary="Map the columns")
def map_import(org_id: OrgId, import_id: ImportId, body: MappingRequest) -> ImportOut:
    """Where each column goes (at least one of email or phone), the default country for phones, what to do
    with contacts already there, and a segment and tags for every imported contact."""
    data = body.model_dump()
    container.import_service().set_mapping(org_id, import_id, data)
    return _out(org_id, import_id)


@router.post("/{import_id}/dry-run", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut, summary="Dry-run")
def dry_run_import(org_id: OrgId, import_id: ImportId) -> ImportOut:
    """Validate the whole file against the contacts already there, writing nothing: how many rows would
    create a contact, update one, be skipped, repeat an earlier row, be invalid (by reason) or be on the
    do-not-contact list, with the first rows of each kind (`dry_run` once `validated`)."""
    container.import_service().dry_run(org_id, import_id)
    return _out(org_id, import_id)


@router.post("/{import_id}/start", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut, summary="Import")
def start_import(
    org_id: OrgId, import_id: ImportId, body: StartRequest, who: Annotated[Principal, Depends(principal)]
) -> ImportOut:
    """Import the file in the background (`importing`, then `completed`), recording `consent_confirmed` as
    each contact's consent proof. Contacts unsubscribed or on the do-not-contact list stay so, and an
    empty cell never clears a field. Running it again creates no duplicates."""
    container.import_service().start(
        org_id, import_id, consent_confirmed=body.consent_confirmed, confirmed_by=f"by API key {who.key_id}"
    )
    return _out(org_id, import_id)


@router.post(
    "/{import_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut, summary="Cancel a run"
)
def cancel_import(org_id: OrgId, import_id: ImportId) -> ImportOut:
    """Stop a running dry run or import after the rows in flight (`cancelling`, then `cancelled`); rows
    already imported stay."""
    container.import_service().cancel(org_id, import_id)
    return _out(org_id, import_id)
