"""Uploaded contact files: what layout they have, and their rows, streamed.

An upload is delimited text (CSV, TSV, TXT) in any common encoding, an Excel (XLSX, XLS) or OpenDocument
(ODS) workbook, or a ZIP holding one of those. `detect` tells which from the content (the file name is
only a hint) and rejects files that are empty, too large, not spreadsheets at all, or built to exhaust
the worker (ZIP bombs, XML entity bombs, thousands of columns). `read_rows` then yields every row as text.

Text is streamed, so no text file is ever held in memory whole. A workbook is loaded a sheet at a time by
python-calamine (from a temporary file when it sits in a ZIP), after `detect` has opened it once in a
child process: calamine aborts the process it runs in on some hostile workbooks.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import PurePosixPath
from typing import IO, Any

import charset_normalizer
from python_calamine import CalamineSheet, CalamineWorkbook, PasswordError

from audience.errors import ValidationError

MAX_FILE_BYTES = 1 << 30  # an upload
MAX_UNPACKED_BYTES = 1 << 30  # what a ZIP member, or all parts of an XLSX/ODS, may inflate to
MAX_COLUMNS = 1000
MAX_FIELD_CHARS = 8 * 1024 * 1024  # csv field_size_limit: a cell larger than this is a file-level error
SAMPLE_BYTES = 1 << 20  # what detection reads of a text file

DELIMITERS = (",", ";", "\t", "|")  # in order of preference when two split a file equally well

_WORKBOOK_FORMATS = frozenset({"xlsx", "xls", "ods"})
_DATA_EXTENSIONS = frozenset({".csv", ".tsv", ".txt", ".xlsx", ".xls", ".ods"})
_FORMAT_NAMES = "CSV, TSV, TXT, XLSX, XLS or ODS"

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a ZIP's first member, or the end record of an empty ZIP
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 (and other Office 97-2003 files)
_OPENDOCUMENT_MIMETYPE = b"application/vnd.oasis.opendocument."
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"

# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BOM = "\ufeff"
_MAX_CHAOS = 0.2  # charset_normalizer's measure of how garbled a decoding looks, 0 to 1
_MAX_CONTROL_SHARE = 0.05
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 and C1 controls but tab and line ends
# A web page or an XML document: what Excel writes when a sheet is saved as "Web Page" or "XML Spreadsheet
# 2003", often under an .xls name. Read as delimited text it would give columns of markup.
_MARKUP = re.compile(r"[\s\ufeff]*<(?:!doctype\s+html|html|table|\?xml)\b", re.IGNORECASE)
_SNIFF_ROWS = 20

_BOMB_RATIO = 200
_BOMB_MIN_BYTES = 50 << 20
_XML_PROLOG_BYTES = 64 << 10
_ELEMENT_START = re.compile(r"<[^?!]")

# A physical line longer than this cannot be a row of cells within MAX_FIELD_CHARS each worth importing;
# it is refused before it is read whole (a 1 GiB file without line breaks would otherwise be one string).
_MAX_LINE_CHARS = 2 * MAX_FIELD_CHARS
_COPY_CHUNK_BYTES = 1 << 20

# Opens a workbook and loads its first worksheet, in a child process: python-calamine aborts the whole
# process on some malformed workbooks (cells or declared dimensions spanning billions of cells make it
# allocate them all at once), which no exception handler survives. Prints the worksheet's name and size,
# or the error the workbook raised, as JSON. A workbook that loads here loads the same way in `read_rows`.
_PROBE = """
import json, sys
from python_calamine import CalamineWorkbook, PasswordError, SheetTypeEnum

try:
    with CalamineWorkbook.from_path(sys.argv[1]) as workbook:
        names = [sheet.name for sheet in workbook.sheets_metadata if sheet.typ == SheetTypeEnum.WorkSheet]
        found = {"sheet": None}
        if names:
            sheet = workbook.get_sheet_by_name(names[0])
            found = {"sheet": names[0], "width": sheet.width, "height": sheet.height}
except Exception as error:
    found = {"error": str(error), "password": isinstance(error, PasswordError)}
print(json.dumps(found))
"""
_PROBE_TIMEOUT_SECONDS = 300
_DAMAGED_WORKBOOK = "it is damaged, or spans more cells than can be loaded"

csv.field_size_limit(MAX_FIELD_CHARS)


class FileProblem(ValidationError):
    """A file that cannot be read as contacts. `code` is one of: empty, too_large, not_a_spreadsheet,
    unknown_encoding, invalid_text, zip_bomb, xml_bomb, empty_archive, too_many_columns, field_too_large,
    unreadable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Layout:
    """How to read an uploaded file, as `detect` found it."""

    format: str  # "csv", "tsv", "txt" (delimited text), "xlsx", "xls", "ods"
    encoding: str | None  # text formats: a Python codec name ("utf-8", "utf-8-sig", "utf-16", "cp1252", ...)
    delimiter: str | None  # text formats: one of DELIMITERS
    member: str | None = None  # the ZIP member holding the data, when the upload is a ZIP
    sheet: str | None = None  # workbooks: the sheet read (the first worksheet)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        return cls(
            format=data["format"],
            encoding=data.get("encoding"),
            delimiter=data.get("delimiter"),
            member=data.get("member"),
            sheet=data.get("sheet"),
        )


# -- detection ------------------------------------------------------------------------------------


def detect(path: str, file_name: str, *, encoding: str | None = None, delimiter: str | None = None) -> Layout:
    """The layout of the upload at `path`, named `file_name` by its owner.

    `encoding` and `delimiter`, when given, override what detection would pick for delimited text (a
    delimiter outside DELIMITERS is a ValidationError). Raises FileProblem for a file that cannot be
    imported.
    """
    if delimiter is not None and delimiter not in DELIMITERS:
        raise ValidationError.for_field("delimiter", delimiter, "must be one of , ; | or a tab")
    codec = None if encoding is None else _known_codec(encoding)
    size = os.path.getsize(path)
    if size == 0:
        raise _empty_file()
    if size > MAX_FILE_BYTES:
        raise FileProblem(
            "too_large",
            f"The file is {_size(size)}, over the {_size(MAX_FILE_BYTES)} limit. "
            "Split it into smaller files and upload each one.",
        )
    with open(path, "rb") as file:
        head = file.read(SAMPLE_BYTES + 1)
    return _detect(path, head, file_name, codec, delimiter, in_archive=False)


def _detect(
    path: str, head: bytes, file_name: str, encoding: str | None, delimiter: str | None, *, in_archive: bool
) -> Layout:
    """The layout of the file at `path`, which starts with `head`; by its content, not its name."""
    if head.startswith(_ZIP_MAGIC):
        return _detect_zip(path, encoding, delimiter, in_archive=in_archive)
    if head.startswith(_OLE2_MAGIC):
        return _detect_workbook(path, "xls")
    return _detect_text(head, file_name, encoding, delimiter)


def _detect_zip(path: str, encoding: str | None, delimiter: str | None, *, in_archive: bool) -> Layout:
    """An XLSX or ODS workbook (both are ZIP packages), or else the first data file of a ZIP archive."""
    with _open_zip(path) as archive:
        infos = archive.infolist()
        _check_unpacked_sizes(infos)
        workbook_format = _package_format(archive, infos)
        if workbook_format is None:
            if in_archive:
                raise FileProblem(
                    "not_a_spreadsheet",
                    "The ZIP file holds another ZIP file. Put the contacts file itself in the ZIP, "
                    "or upload it directly.",
                )
            return _detect_member(archive, _data_member(infos), encoding, delimiter)
        _check_xml_prologs(archive, infos)
    return _detect_workbook(path, workbook_format)


def _package_format(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> str | None:
    """The workbook format ("xlsx" or "ods") when the ZIP is that workbook's package, None for a plain
    archive; other Office and OpenDocument files (documents, presentations) are not spreadsheets."""
    names = {info.filename for info in infos}
    if "[Content_Types].xml" in names:
        if any(name.startswith("xl/") for name in names):
            return "xlsx"
        raise _not_a_spreadsheet("It is an Office document, but not an Excel workbook.")
    if "mimetype" in names:
        with _open_member(archive, archive.getinfo("mimetype")) as member:
            mimetype = member.read(len(_ODS_MIMETYPE) + 1).strip()
        if mimetype == _ODS_MIMETYPE:
            return "ods"
        if mimetype.startswith(_OPENDOCUMENT_MIMETYPE):
            raise _not_a_spreadsheet("It is an OpenDocument file, but not a spreadsheet.")
    return None


def _detect_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, encoding: str | None, delimiter: str | None
) -> Layout:
    """The layout of the archive member `info`; a workbook is extracted to a temporary file to be opened."""
    with _open_member(archive, info) as member:
        head = member.read(SAMPLE_BYTES + 1)
    if not head:
        raise FileProblem("empty", f"{info.filename} in the ZIP file is empty. Put the contacts file in the ZIP.")
    if head.startswith((*_ZIP_MAGIC, _OLE2_MAGIC)):
        with _extracted(archive, info) as local:
            layout = _detect(local, head, info.filename, encoding, delimiter, in_archive=True)
    else:
        layout = _detect_text(head, info.filename, encoding, delimiter)
    return replace(layout, member=info.filename)


def _data_member(infos: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    """The archive's first regular file with a data extension that is neither hidden nor macOS metadata."""
    for info in infos:
        name = PurePosixPath(info.filename)
        if (
            not info.is_dir()
            and not stat.S_ISLNK(info.external_attr >> 16)
            and not any(part.startswith(".") or part == "__MACOSX" for part in name.parts)
            and name.suffix.lower() in _DATA_EXTENSIONS
        ):
            return info
    raise FileProblem(
        "empty_archive",
        f"The ZIP file holds no {_FORMAT_NAMES} file. Put the contacts file in the ZIP, or upload it directly.",
    )


def _check_unpacked_sizes(infos: list[zipfile.ZipInfo]) -> None:
    """Refuses a ZIP whose members declare more than MAX_UNPACKED_BYTES, or one compressed suspiciously
    well (a file of zeros compresses about 1000:1; real contacts about 5:1)."""
    declared = sum(info.file_size for info in infos)
    if declared > MAX_UNPACKED_BYTES:
        raise _zip_bomb(f"it unpacks to {_size(declared)}, over the {_size(MAX_UNPACKED_BYTES)} limit")
    for info in infos:
        if info.file_size > _BOMB_MIN_BYTES and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise _zip_bomb(f"{info.filename} unpacks to {_size(info.file_size)}, {ratio} times its packed size")


def _check_xml_prologs(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Refuses a workbook whose XML parts declare a DOCTYPE or entities (the way to an entity expansion
    bomb), reading no more of each part than its prolog."""
    for info in infos:
        if not info.filename.lower().endswith((".xml", ".rels")):
            continue
        with _open_member(archive, info) as part:
            head = part.read(_XML_PROLOG_BYTES)
        if _declares_entities(head):
            raise FileProblem(
                "xml_bomb",
                "The workbook declares XML entities, which spreadsheets never need. "
                "Re-save it from Excel or LibreOffice and upload it again.",
            )


def _declares_entities(head: bytes) -> bool:
    """Whether the prolog of the XML document starting with `head` (what comes before its first element)
    declares a DOCTYPE or an entity, or is too long to be an ordinary prolog. NUL bytes are dropped so
    that a UTF-16 or UTF-32 document reads as its ASCII markup."""
    text = head.replace(b"\x00", b"").decode("latin-1")
    element = _ELEMENT_START.search(text)
    if element is None:
        return len(head) >= _XML_PROLOG_BYTES
    prolog = text[: element.start()].upper()
    return "<!DOCTYPE" in prolog or "<!ENTITY" in prolog


def _detect_workbook(path: str, workbook_format: str) -> Layout:
    """The layout of a workbook: its first worksheet, which must hold cells in at most MAX_COLUMNS columns."""
    found = _probe_workbook(path)
    if "error" in found:
        raise _password_protected() if found["password"] else _unreadable_workbook(found["error"])
    sheet = found["sheet"]
    if sheet is None:
        raise FileProblem("empty", "The workbook has no worksheet. Put the contacts on its first sheet.")
    if found["height"] == 0:
        raise FileProblem("empty", f"The sheet {sheet!r} is empty. Put the contacts on the workbook's first sheet.")
    if found["width"] > MAX_COLUMNS:
        raise _too_many_columns(found["width"])
    return Layout(workbook_format, None, None, sheet=sheet)


def _probe_workbook(path: str) -> dict[str, Any]:
    """What _PROBE, run in a child process, found in the workbook at `path`."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
    try:
        child = subprocess.run(  # noqa: S603 - this interpreter, a fixed script and a path; no shell
            [sys.executable, "-c", _PROBE, path],
            capture_output=True,
            env=environment,
            timeout=_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise _unreadable_workbook(f"opening it took over {_PROBE_TIMEOUT_SECONDS} seconds") from error
    if child.returncode != 0:
        raise _unreadable_workbook(_DAMAGED_WORKBOOK)
    return json.loads(child.stdout)


def _detect_text(head: bytes, file_name: str, encoding: str | None, delimiter: str | None) -> Layout:
    """The layout of delimited text starting with `head` (SAMPLE_BYTES, and one more when the file goes on)."""
    truncated = len(head) > SAMPLE_BYTES
    sample = head[:SAMPLE_BYTES]
    codec = encoding or _guess_encoding(sample, truncated)
    text = _decode_sample(sample, codec, truncated)
    if truncated:
        text = text[: text.rfind("\n") + 1] or text
    if len(_CONTROL.findall(text)) > _MAX_CONTROL_SHARE * len(text):
        raise _not_a_spreadsheet()
    if _MARKUP.match(text):
        raise _not_a_spreadsheet("It is a web page or an XML document (Excel's Web Page or XML Spreadsheet format).")
    extension = os.path.splitext(file_name)[1].lower()
    delimiter = delimiter or ("\t" if extension == ".tsv" else _sniff_delimiter(text))
    rows = _sample_rows(text, delimiter)
    if not rows:
        raise _empty_file()
    width = max(len(row) for row in rows)
    if width > MAX_COLUMNS:
        raise _too_many_columns(width)
    return Layout(_text_format(extension, delimiter), codec, delimiter)


def _text_format(extension: str, delimiter: str) -> str:
    if extension == ".tsv" and delimiter == "\t":
        return "tsv"
    return "txt" if extension == ".txt" else "csv"


def _known_codec(name: str) -> str:
    """Python's name for the text encoding `name`; FileProblem when there is no such text encoding."""
    try:
        codec = codecs.lookup(name).name
        b"a".decode(codec, "ignore")  # refuses codecs that are not text encodings (base64, rot13, ...)
    except (LookupError, UnicodeError, ValueError) as error:
        raise FileProblem(
            "unknown_encoding",
            f"{name!r} is not a known text encoding. Give one such as utf-8, utf-16 or cp1252, "
            "or leave it out to have it detected.",
        ) from error
    return codec


def _guess_encoding(sample: bytes, truncated: bool) -> str:
    """The encoding of text starting with `sample`: its byte order mark, else UTF-8 when it decodes as
    such, else the legacy encoding it looks most like."""
    for bom, codec in _BOMS:
        if sample.startswith(bom):
            return codec
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=not truncated)
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    if b"\x00" in sample:
        raise _not_a_spreadsheet()
    if truncated:
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    return _legacy_encoding(sample)


def _legacy_encoding(sample: bytes) -> str:
    """A single- or multi-byte legacy encoding that decodes `sample` into plausible text.

    Windows-1252 wins whenever it decodes as cleanly as the best guess: it is what Excel writes on
    Western European and American Windows, and on short samples charset_normalizer cannot tell it from
    its neighbours (it prefers Central European Windows-1250 for "José;Müller", turning "ñ" into "ń").
    """
    best = charset_normalizer.from_bytes(sample, threshold=_MAX_CHAOS).best()
    if best is None or best.chaos > _MAX_CHAOS:
        raise FileProblem(
            "unknown_encoding",
            "Could not tell the text encoding of the file. Save it as UTF-8 CSV (in Excel: Save As, "
            "CSV UTF-8) and upload it again.",
        )
    western = charset_normalizer.from_bytes(sample, threshold=_MAX_CHAOS, cp_isolation=["cp1252"]).best()
    if western is not None and western.chaos <= best.chaos:
        return "cp1252"
    return codecs.lookup(best.encoding).name


def _decode_sample(sample: bytes, codec: str, truncated: bool) -> str:
    """`sample` as text, without a leading BOM; a character cut at the end of a truncated sample is left out."""
    try:
        text = codecs.getincrementaldecoder(codec)().decode(sample, final=not truncated)
    except UnicodeDecodeError as error:
        raise _invalid_text(codec, error.start) from error
    return text.removeprefix(_BOM)


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first rows of `text` into the most consistent number of columns
    (more than one); "," when none splits them (a file of one column)."""
    # max() keeps the first of equal scores, so DELIMITERS' order breaks ties and "," wins when all score 0.
    return max(DELIMITERS, key=lambda delimiter: _consistency([len(row) for row in _sample_rows(text, delimiter)]))


def _consistency(widths: list[int]) -> tuple[float, int]:
    """How well a delimiter splits rows of these widths: the share of rows having the most common width,
    and that width; (0, 0) when that width is 1 (the delimiter does not split the rows)."""
    if not widths:
        return 0.0, 0
    width, count = max(Counter(widths).items(), key=lambda item: (item[1], item[0]))
    return (count / len(widths), width) if width > 1 else (0.0, 0)


def _sample_rows(text: str, delimiter: str) -> list[list[str]]:
    """The first _SNIFF_ROWS rows of `text` that have a non-blank cell, parsed with `delimiter`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return list(islice((row for row in reader if any(cell.strip() for cell in row)), _SNIFF_ROWS))
    except csv.Error as error:
        raise FileProblem("unreadable", f"The start of the file cannot be read as delimited text ({error}).") from error


# -- reading --------------------------------------------------------------------------------------


def read_rows(path: str, layout: Layout) -> Iterator[list[str]]:
    """Every row of the upload at `path` (the header row too) as text cells, one row at a time.

    `layout` is what `detect` returned for the file. Raises FileProblem when the file turns out to be
    unreadable past what detection sampled.
    """
    if layout.format in _WORKBOOK_FORMATS:
        return _workbook_rows(path, layout)
    return _text_rows(path, layout)


def _text_rows(path: str, layout: Layout) -> Iterator[list[str]]:
    """The rows of delimited text; a layout stored without encoding or delimiter reads as UTF-8 CSV."""
    encoding = layout.encoding or "utf-8"
    with _open_data(path, layout.member) as data, io.TextIOWrapper(data, encoding=encoding, newline="") as text:
        reader = csv.reader(_lines(text), delimiter=layout.delimiter or ",")
        while True:
            try:
                row = next(reader, None)
            except (csv.Error, UnicodeDecodeError) as error:
                raise _text_problem(error, reader.line_num, data.chunk_start, encoding) from error
            if row is None:
                return
            yield row


def _lines(text: IO[str]) -> Iterator[str]:
    """The physical lines of `text`, line ends kept, without the BOM a codec leaves (plain "utf-8" keeps
    it); a line longer than _MAX_LINE_CHARS is refused before it is read whole."""
    number = 0
    while line := text.readline(_MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > _MAX_LINE_CHARS:
            raise FileProblem(
                "field_too_large",
                f"Line {number} is longer than {_MAX_LINE_CHARS:,} characters. Check that every quote in "
                "the file is closed and that its rows are on lines of their own.",
            )
        yield line.removeprefix(_BOM) if number == 1 else line


def _text_problem(error: Exception, line: int, chunk_start: int, encoding: str) -> FileProblem:
    if isinstance(error, UnicodeDecodeError):
        return _invalid_text(encoding, chunk_start + error.start)
    if "field larger than field limit" in str(error):
        return FileProblem(
            "field_too_large",
            f"A cell on line {line} holds more than {MAX_FIELD_CHARS:,} characters. Check that every quote "
            "in the file is closed (an open quote runs the rest of the file into one cell).",
        )
    return FileProblem("unreadable", f"Line {line} cannot be read as delimited text ({error}).")


def _workbook_rows(path: str, layout: Layout) -> Iterator[list[str]]:
    with _local_file(path, layout.member) as local, _open_workbook(local) as workbook:
        sheet = _sheet(workbook, layout.sheet)
        with _workbook_errors():
            rows = sheet.iter_rows()
        while True:
            with _workbook_errors():
                row = next(rows, None)
            if row is None:
                return
            yield _row_text(row)


def _row_text(row: list[Any]) -> list[str]:
    """The cells of a workbook row as text, trailing empty cells dropped."""
    cells = [_cell_text(value) for value in row]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _cell_text(value: Any) -> str:
    """A workbook cell as the text a person typed or sees: numbers without a needless ".0", booleans as a
    spreadsheet shows them, dates and times in ISO 8601. Formula cells carry the value last computed."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        # Phone numbers are often typed as numbers: 628123456789.0 is shown, and meant, as 628123456789.
        return format(value, ".0f") if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


# -- files, archives and workbooks ----------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """The bytes of `source`, counted: where the last read started (to place a decoding error) and, with a
    `limit`, a ZIP bomb past it (a member's declared size can lie)."""

    def __init__(self, source: IO[bytes], limit: int | None) -> None:
        super().__init__()
        self._source = source
        self._limit = limit
        self.position = 0
        self.chunk_start = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._source.read(len(buffer))
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise _damaged_zip(error) from error
        buffer[: len(data)] = data
        self.chunk_start = self.position
        self.position += len(data)
        if self._limit is not None and self.position > self._limit:
            raise _zip_bomb(f"it unpacks to more than {_size(self._limit)}")
        return len(data)


@contextmanager
def _open_data(path: str, member: str | None) -> Iterator[_CountingReader]:
    """The bytes of the upload, or of its ZIP member `member`."""
    if member is None:
        with open(path, "rb") as file:
            yield _CountingReader(file, None)
        return
    with _open_zip(path) as archive, _open_member(archive, _member_info(archive, member)) as data:
        yield data


@contextmanager
def _local_file(path: str, member: str | None) -> Iterator[str]:
    """A path to the upload, or to its ZIP member `member` extracted for the time of the block."""
    if member is None:
        yield path
        return
    with _open_zip(path) as archive, _extracted(archive, _member_info(archive, member)) as local:
        yield local


@contextmanager
def _open_zip(path: str) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, ValueError) as error:
        raise _damaged_zip(error) from error
    with archive:
        yield archive


def _member_info(archive: zipfile.ZipFile, member: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(member)
    except KeyError as error:
        raise FileProblem("unreadable", f"The ZIP file no longer holds {member}. Upload it again.") from error


@contextmanager
def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[_CountingReader]:
    """The inflated bytes of an archive member, at most MAX_UNPACKED_BYTES of them."""
    if info.flag_bits & 0x1:
        raise FileProblem(
            "unreadable", f"{info.filename} in the ZIP file is password-protected. Upload it without a password."
        )
    try:
        member = archive.open(info)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, OSError, ValueError, zlib.error) as error:
        raise FileProblem(
            "unreadable",
            f"{info.filename} in the ZIP file cannot be unpacked ({error}). Create the ZIP again with "
            "standard compression, or upload the file itself.",
        ) from error
    with member:
        yield _CountingReader(member, MAX_UNPACKED_BYTES)


@contextmanager
def _extracted(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[str]:
    """The path of a temporary copy of an archive member, removed when the block ends."""
    handle, local = tempfile.mkstemp(suffix=PurePosixPath(info.filename).suffix)
    try:
        with os.fdopen(handle, "wb") as target, _open_member(archive, info) as member:
            shutil.copyfileobj(member, target, _COPY_CHUNK_BYTES)
        yield local
    finally:
        os.unlink(local)


@contextmanager
def _open_workbook(path: str) -> Iterator[CalamineWorkbook]:
    with _workbook_errors():
        workbook = CalamineWorkbook.from_path(path)
    with workbook:
        yield workbook


@contextmanager
def _workbook_errors() -> Iterator[None]:
    """Failures of the workbook parser in the block become FileProblem: its exceptions, and panics of its
    Rust code on malformed files (raised as pyo3_runtime.PanicException, a BaseException that cannot be
    imported, so it is known by name)."""
    try:
        yield
    except Exception as error:
        raise _workbook_problem(error) from error
    except BaseException as error:
        if type(error).__name__ != "PanicException":
            raise
        raise _unreadable_workbook(_DAMAGED_WORKBOOK) from error


def _sheet(workbook: CalamineWorkbook, name: str | None) -> CalamineSheet:
    """The sheet `name`, or the first one when no name is given."""
    with _workbook_errors():
        return workbook.get_sheet_by_index(0) if name is None else workbook.get_sheet_by_name(name)


# -- problems -------------------------------------------------------------------------------------


def _empty_file() -> FileProblem:
    return FileProblem(
        "empty", f"The file is empty. Upload a {_FORMAT_NAMES} file with a header row and a contact on each row."
    )


def _not_a_spreadsheet(detail: str = "") -> FileProblem:
    return FileProblem(
        "not_a_spreadsheet",
        f"This is not a {_FORMAT_NAMES} file. {detail + ' ' if detail else ''}Export the contacts from your "
        "spreadsheet or CRM in one of those formats and upload that file.",
    )


def _invalid_text(encoding: str, offset: int) -> FileProblem:
    return FileProblem(
        "invalid_text",
        f"The file is not valid {encoding} near byte {offset:,}. Save it as UTF-8 CSV (in Excel: Save As, "
        "CSV UTF-8) and upload it again, or choose the encoding the file was saved in.",
    )


def _too_many_columns(width: int) -> FileProblem:
    return FileProblem(
        "too_many_columns",
        f"The file has {width:,} columns; at most {MAX_COLUMNS:,} can be imported. "
        "Delete the columns you do not need and upload it again.",
    )


def _zip_bomb(detail: str) -> FileProblem:
    return FileProblem(
        "zip_bomb",
        f"The ZIP file cannot be imported: {detail}. Upload the contacts file itself, or split it into smaller files.",
    )


def _damaged_zip(error: Exception) -> FileProblem:
    return FileProblem(
        "unreadable",
        f"The file is a damaged or incomplete ZIP archive ({error}); XLSX and ODS workbooks are ZIP archives "
        "too. Save or create it again, or upload the contacts file itself.",
    )


def _workbook_problem(error: Exception) -> FileProblem:
    return _password_protected() if isinstance(error, PasswordError) else _unreadable_workbook(str(error))


def _password_protected() -> FileProblem:
    return FileProblem(
        "unreadable", "The workbook is password-protected. Save a copy without a password and upload that."
    )


def _unreadable_workbook(reason: str) -> FileProblem:
    return FileProblem(
        "unreadable",
        f"The workbook cannot be read ({reason}). If it has a password, remove it; otherwise open it in Excel "
        "or LibreOffice, save it again as XLSX or CSV and upload that.",
    )


def _size(n: int) -> str:
    """A byte count for people: "1 GiB", "2.5 MiB", "812 bytes"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
