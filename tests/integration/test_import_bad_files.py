"""The import bad-file corpus: hostile or broken files sent through the real upload and analysis. Each is
refused at upload, or its analysis fails with an error naming the problem, the import is marked failed
and nothing is written; formula cells are the exception: they import, neutralised in files people open.

One stack serves the whole module; every test has its own org. Files already covered the same way by
tests/integration/test_imports_api.py (an empty upload, a header alone, a PNG, an XML entity bomb, ten
thousand columns of CSV, ZIP bombs) are not repeated here."""

from __future__ import annotations

import csv
import io
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from audience.exports.csvfile import neutralise
from tests.importfiles import write_xlsx
from tests.stacks import module_stack

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    with module_stack() as running:
        yield running


@pytest.fixture(scope="module")
def app(stack: Any) -> Any:
    from audience.api.app import create_app

    return create_app()


@pytest.fixture
def org(app: Any) -> TestClient:
    from audience import admin

    created = admin.create_org("Acme", default_country="ID")
    return TestClient(app, headers={"Authorization": f"Bearer {created['api_key']}"})


# -- the files ------------------------------------------------------------------------------------


def _csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode("utf-8")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


GOOD = _csv([["name", "email"], ["Ana", "ana@example.com"]])


def _xlsx(tmp_path: Path, rows: list[list[Any]], **options: Any) -> bytes:
    return write_xlsx(tmp_path, rows, **options).read_bytes()


def _password_protected_zip() -> bytes:
    """A ZIP whose member says it is encrypted (general purpose flag bit 0, in both headers)."""
    data = bytearray(_zip({"contacts.csv": GOOD}))
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, local + 6, struct.unpack_from("<H", data, local + 6)[0] | 1)
    struct.pack_into("<H", data, central + 8, struct.unpack_from("<H", data, central + 8)[0] | 1)
    return bytes(data)


# What Excel writes for "Save as Web Page" and "XML Spreadsheet 2003", often named .xls.
HTML_TABLE = (
    b'<html xmlns:x="urn:schemas-microsoft-com:office:excel">\r\n<head><meta charset="utf-8"></head>\r\n'
    b"<body>\r\n<table>\r\n<tr><td>name</td><td>email</td></tr>\r\n"
    b"<tr><td>Ana</td><td>ana@example.com</td></tr>\r\n<tr><td>Budi</td><td>budi@example.com</td></tr>\r\n"
    b"</table>\r\n</body>\r\n</html>\r\n"
)
XML_SPREADSHEET = (
    b'<?xml version="1.0"?>\r\n<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">\r\n'
    b'<Worksheet ss:Name="Contacts"><Table>\r\n<Row><Cell><Data ss:Type="String">email</Data></Cell></Row>\r\n'
    b'<Row><Cell><Data ss:Type="String">ana@example.com</Data></Cell></Row>\r\n</Table></Worksheet></Workbook>\r\n'
)

# name -> (file name, the file given a scratch directory, what the analysis error must say)
FAILING: dict[str, tuple[str, Callable[[Path], bytes], str]] = {
    "a PDF named .csv": (
        "contacts.csv",
        lambda _: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nstream\n\x00\x01\x02\x9c\x8f" * 50,
        "not a CSV, TSV, TXT, XLSX, XLS or ODS file",
    ),
    "an executable named .csv": (
        "contacts.csv",
        lambda _: b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 20,
        "not a CSV, TSV, TXT, XLSX, XLS or ODS file",
    ),
    "a BOM and nothing else": ("contacts.csv", lambda _: b"\xef\xbb\xbf", "The file is empty"),
    "a truncated xlsx": (
        "contacts.xlsx",
        lambda d: _xlsx(d, [["name", "email"], ["Ana", "ana@example.com"]] * 50)[:700],
        "damaged or incomplete ZIP archive",
    ),
    "a zip of junk named .xlsx": (
        "contacts.xlsx",
        lambda _: _zip({"junk.bin": bytes(range(256)) * 8}),
        "holds no CSV, TSV, TXT, XLSX, XLS or ODS file",
    ),
    "an xls that is a damaged OLE file": (
        "contacts.xls",
        lambda _: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 20,
        "The workbook cannot be read",
    ),
    "a zip with no sheet": (
        "contacts.zip",
        lambda _: _zip({"README.pdf": b"%PDF-1.7", "__MACOSX/._contacts.csv": b"x", "folder/": b""}),
        "holds no CSV, TSV, TXT, XLSX, XLS or ODS file",
    ),
    "an empty zip": ("contacts.zip", lambda _: b"PK\x05\x06" + bytes(18), "holds no CSV, TSV, TXT, XLSX, XLS or ODS"),
    "a zip inside a zip": (
        "contacts.zip",
        lambda _: _zip({"contacts.csv": _zip({"contacts.csv": GOOD})}),
        "holds another ZIP file",
    ),
    "a zip whose only member climbs out of the archive": (
        "contacts.zip",
        lambda _: _zip({"../../../../tmp/audience-escaped.csv": GOOD}),
        "holds no CSV, TSV, TXT, XLSX, XLS or ODS file",
    ),
    "a zip holding an xlsx entity bomb": (
        "contacts.zip",
        lambda d: _zip({"contacts.xlsx": _xlsx(d, [["name"]], entity_bomb=True)}),
        "declares XML entities",
    ),
    "a password-protected zip": ("contacts.zip", lambda _: _password_protected_zip(), "password-protected"),
    "an xlsx with an empty first sheet": ("contacts.xlsx", lambda d: _xlsx(d, []), "is empty"),
    "an xlsx of 1,001 columns": (
        "contacts.xlsx",
        lambda d: _xlsx(d, [[f"c{i}" for i in range(1001)], ["x"] * 1001]),
        "1,001 columns",
    ),
    "an xlsx spanning billions of cells": (
        "contacts.xlsx",
        lambda d: _xlsx(d, [["name"]], far_cell="XFD1048576"),
        "more cells than can be loaded",
    ),
    "an xls that is a web page": ("contacts.xls", lambda _: HTML_TABLE, "It is a web page or an XML document"),
    "an xls that is an XML spreadsheet": ("contacts.xls", lambda _: XML_SPREADSHEET, "It is a web page or an XML"),
    "NUL bytes throughout": (
        "contacts.csv",
        lambda _: b"name,email\r\n" + b"A\x00n\x00a\x00,\x00a\x00@\x00x\x00.\x00io\x00\r\n" * 200,
        "not a CSV, TSV, TXT, XLSX, XLS or ODS file",
    ),
}


def _upload(org: TestClient, data: bytes, file_name: str) -> str:
    response = org.post("/orgs/c/imports/file", params={"file_name": file_name}, content=data)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _get(org: TestClient, import_id: str) -> dict[str, Any]:
    response = org.get(f"/orgs/c/imports/{import_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _nothing_written(org: TestClient) -> None:
    assert org.get("/orgs/c/contacts/stats").json()["total"] == 0
    assert org.get("/orgs/c/contacts").json()["items"] == []
    assert org.get("/orgs/c/tags").json()["items"] == []


def _failed_cleanly(stack: Any, org: TestClient, import_id: str, says: str) -> dict[str, Any]:
    """The import is failed with an error saying `says`, cannot go further, and wrote nothing."""
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "failed", imp
    assert says in imp["error"], imp["error"]
    assert imp["progress"] is None
    mapping = org.put(f"/orgs/c/imports/{import_id}/mapping", json={"columns": [{"index": 0, "target": "email"}]})
    assert mapping.status_code == 409, mapping.text
    assert org.post(f"/orgs/c/imports/{import_id}/start", json={"consent_confirmed": True}).status_code == 409
    stack.drain()
    _nothing_written(org)
    return imp


@pytest.mark.parametrize("case", list(FAILING))
def test_a_bad_file_fails_its_analysis_naming_the_problem_and_writes_nothing(stack, org, tmp_path, case):
    file_name, make, says = FAILING[case]
    imp = _failed_cleanly(stack, org, _upload(org, make(tmp_path), file_name), says)
    assert imp["columns"] == []


def test_a_zip_member_with_an_absolute_path_is_read_where_it_is_never_written_there(stack, org):
    target = Path("/tmp/audience-absolute-member.csv")
    target.unlink(missing_ok=True)
    import_id = _upload(org, _zip({str(target): GOOD}), "contacts.zip")
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "analysed", imp
    assert imp["layout"]["member"] == str(target)
    assert not target.exists()
    _nothing_written(org)


@pytest.mark.parametrize(
    ("file_name", "content_type"),
    [
        ("contacts.exe", "application/octet-stream"),
        ("contacts", "text/csv"),
        ("contacts.csv.php", "text/csv"),
        ("../../contacts.pdf", "application/pdf"),
    ],
)
def test_a_file_name_without_a_data_extension_is_refused_at_upload(stack, org, file_name, content_type):
    response = org.post(
        "/orgs/c/imports/file", params={"file_name": file_name}, content=GOOD, headers={"Content-Type": content_type}
    )
    assert response.status_code == 422, response.text
    assert org.get("/orgs/c/imports").json()["items"] == []
    _nothing_written(org)


def test_a_declared_encoding_the_file_does_not_have_fails_naming_the_byte(stack, org):
    data = "name,email\r\nJosé,jose@example.com\r\n".encode("cp1252")
    import_id = _upload(org, data, "latin.csv")
    stack.drain()
    assert _get(org, import_id)["status"] == "analysed"
    again = org.post(f"/orgs/c/imports/{import_id}/analyse", json={"encoding": "utf-8"})
    assert again.status_code == 202, again.text
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "failed", imp
    assert "not valid utf-8 near byte 15" in imp["error"]
    assert "choose the encoding the file was saved in" in imp["error"]
    # The first analysis still stands (a failed import with columns may be mapped and run again).
    assert imp["layout"]["encoding"] == "cp1252"
    assert imp["columns"][0]["samples"] == ["José"]
    _nothing_written(org)


def test_a_20_mb_line_uploaded_to_the_bucket_fails_naming_its_line(stack, org):
    created = org.post("/orgs/c/imports", json={"file_name": "one-line.csv", "size": 20 << 20})
    assert created.status_code == 201, created.text
    form = created.json()["upload"]
    import_id = created.json()["import"]["id"]
    data = b"email,note\r\nana@example.com," + b"x" * (20 << 20) + b"\r\n"
    uploaded = requests.post(form["url"], data=form["fields"], files={"file": ("one-line.csv", data)}, timeout=60)
    assert uploaded.status_code in (200, 201, 204), uploaded.text
    assert org.post(f"/orgs/c/imports/{import_id}/analyse").status_code == 202
    stack.drain()
    imp = _get(org, import_id)
    if imp["status"] == "analysed":  # the sample ends inside the line: reading the whole file refuses it
        mapped = org.put(f"/orgs/c/imports/{import_id}/mapping", json={"columns": [{"index": 0, "target": "email"}]})
        assert mapped.status_code == 200, mapped.text
        assert org.post(f"/orgs/c/imports/{import_id}/start", json={"consent_confirmed": True}).status_code == 202
        stack.drain()
        imp = _get(org, import_id)
    assert imp["status"] == "failed", imp
    assert "Line 2 is longer than" in imp["error"] or "line 2" in imp["error"], imp["error"]
    _nothing_written(org)


def test_a_zip_of_several_files_imports_its_first_data_file_only(stack, org):
    data = _zip(
        {
            "notes.txt.bak": b"not data",
            "first.csv": _csv([["email"], ["first@example.com"]]),
            "second.csv": _csv([["email"], ["second@example.com"]]),
        }
    )
    import_id = _upload(org, data, "contacts.zip")
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "analysed", imp
    assert imp["layout"]["member"] == "first.csv"
    _nothing_written(org)  # nothing before the import is started


def test_formula_cells_import_as_typed_and_leave_neutralised_in_exports(stack, org, tmp_path):
    payloads = [
        '=HYPERLINK("http://evil.example","click")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ]
    rows = [["name", "email"]] + [[payload, f"p{i}@example.com"] for i, payload in enumerate(payloads)]
    for file_name, data in (("formulas.csv", _csv(rows)), ("formulas.xlsx", _xlsx(tmp_path, rows))):
        import_id = _upload(org, data, file_name)
        stack.drain()
        imp = _get(org, import_id)
        assert imp["status"] == "analysed", imp
        columns = [{"index": 0, "target": "full_name"}, {"index": 1, "target": "email"}]
        assert org.put(
            f"/orgs/c/imports/{import_id}/mapping", json={"columns": columns, "import_tag": False}
        ).is_success
        assert org.post(f"/orgs/c/imports/{import_id}/start", json={"consent_confirmed": True}).status_code == 202
        stack.drain()
        assert _get(org, import_id)["status"] == "completed"
    names = {c["email"]: c["full_name"] for c in org.get("/orgs/c/contacts", params={"take": 100}).json()["items"]}
    assert len(names) == len(payloads)

    requested = org.post("/orgs/c/exports", json={"kind": "contacts"})
    assert requested.status_code == 202, requested.text
    stack.drain()
    export = org.get(requested.headers["Location"]).json()
    assert export["status"] == "done", export
    key = f"exports/{_org_id(org)}/{export['id']}.csv"
    data = stack.client("s3").get_object(Bucket=stack.resources["ExportsBucket"], Key=key)["Body"].read()
    exported = {cell for row in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")) for cell in row}
    for name in names.values():
        assert neutralise(name) in exported
        assert neutralise(name)[:1] not in ("=", "+", "-", "@", "\t", "\r"), name


def _org_id(org: TestClient) -> str:
    return org.get("/orgs/c").json()["id"]
