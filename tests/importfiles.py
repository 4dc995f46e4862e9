"""Contact files as people upload them, written to a directory for import tests.

Text in any encoding, delimiter and line ending; XLSX and ODS written by hand (the few parts a reader
needs); XLS through xlwt; ZIP archives; and hostile files: ZIP bombs, a ZIP that lies about its size,
workbooks that declare XML entities or claim to span billions of cells.
"""

from __future__ import annotations

import csv
import datetime
import struct
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import xlwt

HEADER = ["name", "email", "phone", "country"]

_NAMES = (
    "José Müller",
    "Сергей Иванов",
    "山田太郎",
    "محمد",
    "Ana Pérez",
    "Zoë O'Brien",
    "Nguyễn Văn An",
    "Dr. John Smith, Jr.",
)
_PHONES = ("+62 812-3456-7890", "0812 3456 7890", "(555) 010-0199", "+44 20 7946 0958", "12", "")
_COUNTRIES = ("ID", "ID", "US", "GB", "DE", "")
_INVALID_EMAILS = ("not-an-email", "", "two@@example.com")


@dataclass(frozen=True, slots=True)
class Formula:
    """A workbook cell holding a formula and the value a spreadsheet last computed for it."""

    expression: str
    cached: float | str


Cell = str | bool | int | float | datetime.date | Formula

# -- text -----------------------------------------------------------------------------------------


def rows_of(n: int) -> Iterator[list[str]]:
    """`HEADER` then `n` contacts: names in several scripts, phones in mixed formats, some invalid values."""
    yield list(HEADER)
    for i in range(n):
        email = _INVALID_EMAILS[i // 7 % len(_INVALID_EMAILS)] if i % 7 == 6 else f"contact{i}@example.com"
        yield [_NAMES[i % len(_NAMES)], email, _PHONES[i % len(_PHONES)], _COUNTRIES[i % len(_COUNTRIES)]]


def write_csv(
    directory: Path,
    rows: Iterable[Sequence[str]],
    *,
    name: str = "contacts.csv",
    delimiter: str = ",",
    encoding: str = "utf-8",
    bom: bool = False,
    newline: str = "\r\n",
) -> Path:
    """`rows` as delimited text, quoted where needed. `bom` starts the text with U+FEFF (codecs such as
    `utf-16` write their own)."""
    path = directory / name
    with path.open("w", encoding=encoding, newline="") as file:
        if bom:
            file.write("\ufeff")
        writer = csv.writer(file, delimiter=delimiter, lineterminator=newline)
        writer.writerows(rows)
    return path


# -- archives -------------------------------------------------------------------------------------


def write_zip(directory: Path, members: dict[str, bytes], *, name: str = "contacts.zip") -> Path:
    """A deflated ZIP of `members` (name to content), in the order given."""
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def zip_bomb(directory: Path, *, inflated_bytes: int = 10 << 20, name: str = "bomb.zip") -> Path:
    """A ZIP of a few KiB holding `contacts.csv`, `inflated_bytes` of `0,0` rows (streamed 1 MiB at a time)."""
    path = directory / name
    block = b"0,0\r\n" * ((1 << 20) // 5)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("contacts.csv", "w") as member:
        written = 0
        while written < inflated_bytes:
            chunk = block[: inflated_bytes - written]
            member.write(chunk)
            written += len(chunk)
    return path


def forged_zip(directory: Path, *, declared_bytes: int = 2 << 30, name: str = "forged.zip") -> Path:
    """A ZIP of one small CSV whose central directory claims it inflates to `declared_bytes`."""
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("contacts.csv", b"email\r\na@example.com\r\n")
        archive.infolist()[0].file_size = declared_bytes
    return path


# -- workbooks ------------------------------------------------------------------------------------

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIPS = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE_RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_CONTENT_TYPES = (
    _XML + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>"
)
_PACKAGE_RELS = (
    _XML + f'<Relationships xmlns="{_RELATIONSHIPS}">'
    f'<Relationship Id="rId1" Type="{_OFFICE_RELATIONSHIPS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    _XML + f'<workbook xmlns="{_MAIN}" xmlns:r="{_OFFICE_RELATIONSHIPS}">'
    '<sheets><sheet name="Contacts" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    _XML + f'<Relationships xmlns="{_RELATIONSHIPS}">'
    f'<Relationship Id="rId1" Type="{_OFFICE_RELATIONSHIPS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_OFFICE_RELATIONSHIPS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
# Cell styles: 0 general, 1 a date (built-in format 14), 2 a date and time (built-in format 22).
_STYLES = (
    _XML + f'<styleSheet xmlns="{_MAIN}">'
    '<fonts count="1"><font/></fonts><fills count="1"><fill/></fills><borders count="1"><border/></borders>'
    '<cellStyleXfs count="1"><xf/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/>'
    '<xf numFmtId="22" applyNumberFormat="1"/></cellXfs></styleSheet>'
)
# Billion laughs: each entity ten of the one before, 10^9 "lol"s once the last is expanded.
_ENTITY_BOMB = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE worksheet [\n<!ENTITY lol0 "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    + "]>\n"
)
_EXCEL_EPOCH = datetime.datetime(1899, 12, 30)


def write_xlsx(
    directory: Path,
    rows: Iterable[Sequence[Cell]],
    *,
    name: str = "contacts.xlsx",
    entity_bomb: bool = False,
    far_cell: str | None = None,
) -> Path:
    """A one-sheet XLSX ("Contacts"): text as inline strings, numbers, booleans, dates as styled serial
    numbers and `Formula` cells with their cached value. `entity_bomb` opens the sheet with a
    billion-laughs DOCTYPE and puts the last entity in a cell; `far_cell` (say "XFD1048576", the last
    cell of a sheet) adds one text cell there, after the rows."""
    sheet_rows = []
    for r, row in enumerate(rows, start=1):
        cells = "".join(_xlsx_cell(f"{_column(c)}{r}", value) for c, value in enumerate(row))
        sheet_rows.append(f'<row r="{r}">{cells}</row>')
    if entity_bomb:
        sheet_rows.append(f'<row r="{len(sheet_rows) + 1}"><c t="inlineStr"><is><t>&lol9;</t></is></c></row>')
    if far_cell:
        far_row = far_cell.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        sheet_rows.append(f'<row r="{far_row}">{_xlsx_cell(far_cell, "far")}</row>')
    prolog = _ENTITY_BOMB if entity_bomb else _XML
    sheet = f'{prolog}<worksheet xmlns="{_MAIN}"><sheetData>{"".join(sheet_rows)}</sheetData></worksheet>'
    parts = {
        "[Content_Types].xml": _CONTENT_TYPES,
        "_rels/.rels": _PACKAGE_RELS,
        "xl/workbook.xml": _WORKBOOK,
        "xl/_rels/workbook.xml.rels": _WORKBOOK_RELS,
        "xl/styles.xml": _STYLES,
        "xl/worksheets/sheet1.xml": sheet,
    }
    return write_zip(directory, {part: text.encode() for part, text in parts.items()}, name=name)


def _column(index: int) -> str:
    """The spreadsheet column name of a 0-based index: A, B, ..., Z, AA, ..."""
    name = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        name = chr(ord("A") + remainder) + name
    return name


def _xlsx_cell(reference: str, value: Cell) -> str:
    if isinstance(value, Formula):
        cached = value.cached
        kind = ' t="str"' if isinstance(cached, str) else ""
        return f'<c r="{reference}"{kind}><f>{escape(value.expression)}</f><v>{escape(str(cached))}</v></c>'
    if isinstance(value, bool):
        return f'<c r="{reference}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{reference}"><v>{value!r}</v></c>'
    if isinstance(value, datetime.date):
        serial, style = _excel_serial(value)
        return f'<c r="{reference}" s="{style}"><v>{serial!r}</v></c>'
    return f'<c r="{reference}" t="inlineStr"><is><t xml:space="preserve">{escape(value)}</t></is></c>'


def _excel_serial(value: datetime.date) -> tuple[float, int]:
    """Days since Excel's epoch, and the cell style that shows them as a date or a date and time."""
    if isinstance(value, datetime.datetime):
        return (value - _EXCEL_EPOCH) / datetime.timedelta(days=1), 2
    return float((value - _EXCEL_EPOCH.date()).days), 1


def write_xls(directory: Path, rows: Iterable[Sequence[Cell]], *, name: str = "contacts.xls") -> Path:
    """A one-sheet Excel 97-2003 workbook ("Contacts") written by xlwt; dates carry a date format."""
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Contacts")
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, datetime.date):
                sheet.write(r, c, value, date_style)
            else:
                sheet.write(r, c, value)
    path = directory / name
    book.save(str(path))
    return path


def forged_xls(directory: Path, *, name: str = "forged.xls") -> Path:
    """A small XLS whose DIMENSIONS record claims its sheet spans 2^31 rows by 256 columns."""
    path = write_xls(directory, [["name"], ["Ana"]], name=name)
    data = bytearray(path.read_bytes())
    record = data.index(_XLS_DIMENSIONS)  # then first row, last row + 1, first column, last column + 1
    struct.pack_into("<IIHH", data, record + len(_XLS_DIMENSIONS), 0, 0x7FFF_FFFF, 0, 256)
    path.write_bytes(bytes(data))
    return path


_XLS_DIMENSIONS = b"\x00\x02\x0e\x00"  # record 0x0200, 14 bytes long
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"
_ODS_MANIFEST = (
    _XML + '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
    'manifest:version="1.2">'
    f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{_ODS_MIMETYPE.decode()}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)
_ODS_NAMESPACES = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def write_ods(directory: Path, rows: Iterable[Sequence[str | int | float]], *, name: str = "contacts.ods") -> Path:
    """A one-sheet OpenDocument spreadsheet ("Contacts") of text and numbers, the `mimetype` member first
    and stored, as the format requires."""
    table_rows = "".join(f"<table:table-row>{''.join(map(_ods_cell, row))}</table:table-row>" for row in rows)
    content = (
        f'{_XML}<office:document-content {_ODS_NAMESPACES} office:version="1.2"><office:body><office:spreadsheet>'
        f'<table:table table:name="Contacts">{table_rows}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), _ODS_MIMETYPE, zipfile.ZIP_STORED)
        archive.writestr("META-INF/manifest.xml", _ODS_MANIFEST)
        archive.writestr("content.xml", content)
    return path


def _ods_cell(value: str | int | float) -> str:
    if isinstance(value, str):
        return f'<table:table-cell office:value-type="string"><text:p>{escape(value)}</text:p></table:table-cell>'
    return (
        f'<table:table-cell office:value-type="float" office:value={quoteattr(repr(value))}>'
        f"<text:p>{value}</text:p></table:table-cell>"
    )
