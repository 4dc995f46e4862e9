"""Uploaded contact files: layout detection (encodings, delimiters, workbooks, archives), streaming rows,
and every kind of file that must be refused with a clear reason."""

import datetime
import os
import random
import tempfile
import time
import tracemalloc

import pytest

from audience.errors import ValidationError
from audience.imports import files
from audience.imports.files import FileProblem, Layout, detect, read_rows
from tests.importfiles import (
    HEADER,
    Formula,
    forged_xls,
    forged_zip,
    rows_of,
    write_csv,
    write_ods,
    write_xls,
    write_xlsx,
    write_zip,
    zip_bomb,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def read(path, **options):
    """The layout detected for `path` (uploaded under its own name) and every row read with it."""
    layout = detect(str(path), path.name, **options)
    return layout, list(read_rows(str(path), layout))


def problem(path, **options) -> FileProblem:
    """The FileProblem that detecting, then reading, `path` raises."""
    with pytest.raises(FileProblem) as raised:
        read(path, **options)
    assert raised.value.message, "a problem always says what is wrong"
    return raised.value


# -- delimited text -------------------------------------------------------------------------------


def test_utf8_csv_round_trips_every_cell(tmp_path):
    rows = list(rows_of(40))
    layout, read_back = read(write_csv(tmp_path, rows))

    assert layout == Layout("csv", "utf-8", ",")
    assert read_back == rows


def test_utf8_with_bom_loses_the_bom(tmp_path):
    rows = list(rows_of(5))
    layout, read_back = read(write_csv(tmp_path, rows, bom=True))

    assert layout.encoding == "utf-8-sig"
    assert read_back == rows


def test_a_bom_left_by_an_explicit_encoding_is_dropped_before_parsing(tmp_path):
    rows = [["full name", "email"], ["Ana", "ana@example.com"]]
    path = tmp_path / "contacts.csv"
    path.write_bytes(b'\xef\xbb\xbf"full name",email\r\nAna,ana@example.com\r\n')

    layout, read_back = read(path, encoding="UTF8")

    assert layout.encoding == "utf-8"
    assert read_back == rows


def test_utf16_tab_separated_unicode_text_from_excel(tmp_path):
    rows = list(rows_of(10))
    path = write_csv(tmp_path, rows, name="contacts.txt", delimiter="\t", encoding="utf-16-le", bom=True)
    assert path.read_bytes().startswith(b"\xff\xfe")

    layout, read_back = read(path)

    assert layout == Layout("txt", "utf-16", "\t")
    assert read_back == rows


def test_windows_1252_with_accented_names(tmp_path):
    rows = [["name", "surname", "note"], ["José", "Müller", "café"], ["Iñigo", "Núñez", "€5, œuvre, Šimon"]]
    layout, read_back = read(write_csv(tmp_path, rows, delimiter=";", encoding="cp1252"))

    assert layout == Layout("csv", "cp1252", ";")
    assert read_back == rows


def test_semicolon_european_excel_export_with_decimal_commas(tmp_path):
    rows = [["Name", "Betrag", "Telefon"], ["Jörg", "1,50", "+49 30 1234567"], ["Zoë", "2,75", "030 765432"]]
    path = write_csv(tmp_path, rows, delimiter=";", newline="\r\n")
    assert b"\r\n" in path.read_bytes()

    layout, read_back = read(path)

    assert layout.delimiter == ";"
    assert read_back == rows


@pytest.mark.parametrize(
    ("name", "delimiter", "file_format"),
    [("contacts.tsv", "\t", "tsv"), ("contacts.csv", "\t", "csv"), ("contacts.csv", "|", "csv")],
)
def test_tab_and_pipe_delimiters(tmp_path, name, delimiter, file_format):
    rows = list(rows_of(20))
    layout, read_back = read(write_csv(tmp_path, rows, name=name, delimiter=delimiter, newline="\n"))

    assert (layout.format, layout.delimiter) == (file_format, delimiter)
    assert read_back == rows


def test_quoted_newlines_and_delimiters_stay_inside_their_cells(tmp_path):
    rows = [
        ["name", "address", "note"],
        ["Dr. John Smith, Jr.", "1 Main St\r\nApt 2", 'said "hi"; left'],
        ["  Ana  ", "Line one\nLine two", ""],
    ]
    layout, read_back = read(write_csv(tmp_path, rows))

    assert layout.delimiter == ","
    assert read_back == rows


def test_txt_extension_is_delimited_text(tmp_path):
    layout, read_back = read(write_csv(tmp_path, [["email"], ["a@example.com"]], name="list.txt"))

    assert layout == Layout("txt", "utf-8", ",")
    assert read_back == [["email"], ["a@example.com"]]


def test_one_column_without_delimiters_is_comma_separated(tmp_path):
    layout, read_back = read(write_csv(tmp_path, [["phone"], ["+62 812-3456-7890"], ["0812 3456 7890"]]))

    assert layout.delimiter == ","
    assert read_back == [["phone"], ["+62 812-3456-7890"], ["0812 3456 7890"]]


def test_given_delimiter_and_encoding_win(tmp_path):
    path = write_csv(tmp_path, [["a;b", "c"], ["d;e", "f"]], delimiter="|", encoding="cp1252")

    layout, read_back = read(path, encoding="latin-1", delimiter="|")

    assert layout == Layout("csv", "iso8859-1", "|")
    assert read_back == [["a;b", "c"], ["d;e", "f"]]


def test_a_multibyte_character_cut_by_the_sample_is_still_utf8(tmp_path):
    path = tmp_path / "contacts.csv"
    filler = b"a" * (files.SAMPLE_BYTES - 1 - len(b"name\n"))
    path.write_bytes(b"name\n" + filler + "é\nZoë\n".encode())
    assert path.read_bytes()[files.SAMPLE_BYTES - 1 : files.SAMPLE_BYTES + 1] == "é".encode()

    layout, read_back = read(path)

    assert layout.encoding == "utf-8"
    assert read_back[-1] == ["Zoë"]


def test_a_one_mebibyte_cell_is_read(tmp_path):
    big = "x" * (1 << 20)
    layout, read_back = read(write_csv(tmp_path, [["name", "note"], ["Ana", big], ["Ben", "short"]]))

    assert read_back == [["name", "note"], ["Ana", big], ["Ben", "short"]]
    assert layout.delimiter == ","


def test_layout_round_trips_through_a_dict(tmp_path):
    layout = Layout("xlsx", None, None, member="data/contacts.xlsx", sheet="Contacts")

    assert Layout.from_dict(layout.to_dict()) == layout
    assert Layout.from_dict({"format": "csv", "encoding": "utf-8", "delimiter": ";"}) == Layout("csv", "utf-8", ";")


# -- workbooks ------------------------------------------------------------------------------------

WORKBOOK_ROWS = [
    ["name", "phone", "joined", "last seen", "vip", "score", "large"],
    ["José Müller", 628123456789, datetime.date(2024, 5, 1), datetime.datetime(2024, 5, 1, 10, 0), True, 1.5, 1e20],
    ["山田太郎", 5550100199, datetime.date(1999, 12, 31), datetime.datetime(2000, 1, 1, 0, 0, 30), False, -2, 0.25],
]
WORKBOOK_TEXT = [
    ["name", "phone", "joined", "last seen", "vip", "score", "large"],
    ["José Müller", "628123456789", "2024-05-01", "2024-05-01T10:00:00", "TRUE", "1.5", "1e+20"],
    ["山田太郎", "5550100199", "1999-12-31", "2000-01-01T00:00:30", "FALSE", "-2", "0.25"],
]


def test_xlsx_cells_come_back_as_the_text_people_see(tmp_path):
    layout, read_back = read(write_xlsx(tmp_path, WORKBOOK_ROWS))

    assert layout == Layout("xlsx", None, None, sheet="Contacts")
    assert read_back == WORKBOOK_TEXT


def test_xlsx_formulas_give_their_cached_value_never_the_formula(tmp_path):
    # The cached 7 is stale (1+2 is 3): reading it back proves nothing was evaluated.
    rows = [["name", "total", "label", "empty"], ["Ana", Formula("1+2", 7), Formula('"a"&"b"', "ab"), ""]]

    _, read_back = read(write_xlsx(tmp_path, rows))

    assert read_back == [["name", "total", "label", "empty"], ["Ana", "7", "ab"]]


def test_a_csv_name_does_not_hide_an_xlsx(tmp_path):
    layout, read_back = read(write_xlsx(tmp_path, WORKBOOK_ROWS, name="contacts.csv"))

    assert layout.format == "xlsx"
    assert read_back == WORKBOOK_TEXT


def test_xls_written_by_excel_97(tmp_path):
    layout, read_back = read(write_xls(tmp_path, WORKBOOK_ROWS))

    assert layout == Layout("xls", None, None, sheet="Contacts")
    assert read_back == WORKBOOK_TEXT


def test_ods(tmp_path):
    layout, read_back = read(write_ods(tmp_path, [["name", "phone"], ["Сергей Иванов", 628123456789], ["محمد", 1.5]]))

    assert layout == Layout("ods", None, None, sheet="Contacts")
    assert read_back == [["name", "phone"], ["Сергей Иванов", "628123456789"], ["محمد", "1.5"]]


# -- archives -------------------------------------------------------------------------------------


def test_zip_of_one_csv(tmp_path):
    rows = list(rows_of(10))
    data = write_csv(tmp_path, rows, delimiter=";").read_bytes()

    layout, read_back = read(write_zip(tmp_path, {"export/contacts.csv": data}))

    assert layout == Layout("csv", "utf-8", ";", member="export/contacts.csv")
    assert read_back == rows


def test_zip_uses_its_first_data_file_skipping_folders_and_mac_metadata(tmp_path):
    members = {
        "export/": b"",
        "__MACOSX/export/._contacts.csv": b"\x00\x05\x16\x07" + b"\x00" * 60,
        "export/.hidden.csv": b"email\nhidden@example.com\n",
        "export/README.md": b"# Contacts",
        "export/contacts.tsv": b"email\tname\nfirst@example.com\tAna\n",
        "export/more.csv": b"email\nsecond@example.com\n",
    }

    layout, read_back = read(write_zip(tmp_path, members))

    assert layout == Layout("tsv", "utf-8", "\t", member="export/contacts.tsv")
    assert read_back == [["email", "name"], ["first@example.com", "Ana"]]


def test_zip_of_an_xlsx_is_extracted_to_a_temporary_file_then_removed(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    workbook = write_xlsx(tmp_path, WORKBOOK_ROWS).read_bytes()

    layout, read_back = read(write_zip(tmp_path, {"contacts.xlsx": workbook}))

    assert layout == Layout("xlsx", None, None, member="contacts.xlsx", sheet="Contacts")
    assert read_back == WORKBOOK_TEXT
    assert list(scratch.iterdir()) == []


# -- refused files --------------------------------------------------------------------------------


@pytest.mark.corpus
def test_empty_file(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"")

    assert problem(path).code == "empty"


@pytest.mark.corpus
def test_text_of_blank_lines_is_empty(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"\xef\xbb\xbf\r\n , \r\n\r\n")

    assert problem(path).code == "empty"


@pytest.mark.corpus
def test_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1000)
    path = write_csv(tmp_path, rows_of(100))

    found = problem(path)

    assert found.code == "too_large"
    assert "1000 bytes" in found.message


@pytest.mark.corpus
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(PNG + bytes(range(256)) * 4, id="png"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nstream\n\x00\x01\x02\x9c\x8f", id="pdf"),
        pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", id="executable"),
        pytest.param(random.Random(7).randbytes(50_000), id="random"),
    ],
)
def test_binary_files_are_not_spreadsheets(tmp_path, data):
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)

    found = problem(path)

    assert found.code == "not_a_spreadsheet"
    assert "not a CSV, TSV, TXT, XLSX, XLS or ODS file" in found.message


@pytest.mark.corpus
def test_control_characters_are_not_a_spreadsheet(tmp_path):
    path = tmp_path / "contacts.txt"
    path.write_bytes(bytes(range(1, 32)) * 100)

    assert problem(path, encoding="latin-1").code == "not_a_spreadsheet"


@pytest.mark.corpus
def test_binary_without_nul_bytes_has_no_encoding(tmp_path):
    path = tmp_path / "contacts.csv"
    rng = random.Random(5)
    path.write_bytes(bytes(rng.randrange(1, 256) for _ in range(3000)))

    found = problem(path)

    assert found.code == "unknown_encoding"
    assert "UTF-8 CSV" in found.message


@pytest.mark.corpus
def test_an_office_document_that_is_no_spreadsheet(tmp_path):
    path = write_zip(tmp_path, {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"}, name="c.xlsx")

    assert problem(path).code == "not_a_spreadsheet"


@pytest.mark.corpus
@pytest.mark.parametrize("encoding", ["klingon", "base64", ""])
def test_unknown_encoding_given(tmp_path, encoding):
    found = problem(write_csv(tmp_path, rows_of(3)), encoding=encoding)

    assert found.code == "unknown_encoding"
    assert repr(encoding) in found.message


@pytest.mark.corpus
def test_a_delimiter_that_is_no_delimiter_is_a_request_error(tmp_path):
    with pytest.raises(ValidationError) as raised:
        detect(str(write_csv(tmp_path, rows_of(3))), "contacts.csv", delimiter=":")

    assert not isinstance(raised.value, FileProblem)
    assert raised.value.fields[0]["field"] == "delimiter"


@pytest.mark.corpus
def test_a_zip_declaring_more_than_the_limit_is_a_bomb(tmp_path):
    found = problem(forged_zip(tmp_path, declared_bytes=2 << 30))

    assert found.code == "zip_bomb"
    assert "2 GiB" in found.message


@pytest.mark.corpus
def test_a_zip_compressed_too_well_is_a_bomb(tmp_path):
    found = problem(forged_zip(tmp_path, declared_bytes=60 << 20))

    assert found.code == "zip_bomb"
    assert "60 MiB" in found.message


@pytest.mark.corpus
def test_a_zip_inflating_past_the_limit_while_read_is_a_bomb(tmp_path, monkeypatch):
    path = zip_bomb(tmp_path, inflated_bytes=10 << 20)
    layout = detect(str(path), path.name)
    monkeypatch.setattr(files, "MAX_UNPACKED_BYTES", 4 << 20)

    with pytest.raises(FileProblem) as raised:
        for _ in read_rows(str(path), layout):
            pass

    assert raised.value.code == "zip_bomb"
    assert "4 MiB" in raised.value.message


@pytest.mark.corpus
def test_a_workbook_bomb_inside_a_zip_is_found(tmp_path):
    bomb = write_xlsx(tmp_path, [["name"]], entity_bomb=True).read_bytes()

    assert problem(write_zip(tmp_path, {"contacts.xlsx": bomb})).code == "xml_bomb"


@pytest.mark.corpus
def test_a_zip_inside_a_zip_is_refused(tmp_path):
    inner = write_zip(tmp_path, {"contacts.csv": b"email\na@example.com\n"}, name="inner.zip").read_bytes()

    assert problem(write_zip(tmp_path, {"contacts.csv": inner})).code == "not_a_spreadsheet"


@pytest.mark.corpus
def test_zip_without_data_files(tmp_path):
    path = write_zip(tmp_path, {"__MACOSX/._contacts.csv": b"x", "notes.pdf": b"%PDF", "folder/": b""})

    assert problem(path).code == "empty_archive"


@pytest.mark.corpus
def test_damaged_zip(tmp_path):
    data = write_zip(tmp_path, {"contacts.csv": b"email\n" * 1000}).read_bytes()
    path = tmp_path / "damaged.zip"
    path.write_bytes(data[: len(data) // 2])

    assert problem(path).code == "unreadable"


@pytest.mark.corpus
def test_xlsx_declaring_entities_fails_fast_without_expanding_them(tmp_path):
    path = write_xlsx(tmp_path, [["name"], ["Ana"]], entity_bomb=True)
    started = time.perf_counter()

    found = problem(path)

    assert found.code == "xml_bomb"
    assert "declares XML entities" in found.message
    assert time.perf_counter() - started < 1


@pytest.mark.corpus
def test_damaged_workbooks_are_unreadable(tmp_path):
    workbook = write_xlsx(tmp_path, WORKBOOK_ROWS).read_bytes()
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(workbook[: len(workbook) // 2])
    ole = tmp_path / "contacts.xls"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + random.Random(3).randbytes(5000))

    assert problem(truncated).code == "unreadable"
    assert problem(ole).code == "unreadable"


@pytest.mark.corpus
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda directory: forged_xls(directory), id="xls-dimensions"),
        pytest.param(lambda directory: write_xlsx(directory, [["name"]], far_cell="XFD1048576"), id="xlsx-far-cell"),
    ],
)
def test_workbooks_spanning_billions_of_cells_are_refused_without_crashing_the_worker(tmp_path, make):
    found = problem(make(tmp_path))

    assert found.code == "unreadable"
    assert "more cells than can be loaded" in found.message


@pytest.mark.corpus
def test_a_workbook_with_an_empty_first_sheet(tmp_path):
    found = problem(write_xlsx(tmp_path, []))

    assert found.code == "empty"
    assert "'Contacts'" in found.message


@pytest.mark.corpus
def test_ten_thousand_columns(tmp_path):
    header = [f"column {i}" for i in range(10_000)]

    found = problem(write_csv(tmp_path, [header, ["x"] * 10_000]))

    assert found.code == "too_many_columns"
    assert "10,000 columns" in found.message


@pytest.mark.corpus
def test_ten_thousand_columns_in_a_workbook(tmp_path):
    assert problem(write_xlsx(tmp_path, [[f"c{i}" for i in range(1001)]])).code == "too_many_columns"


@pytest.mark.corpus
def test_a_cell_over_the_field_limit_names_its_line(tmp_path):
    rows = [["name", "note"], ["Ana", "ok"], ["Ben", "x" * (9 << 20)], ["Cy", "ok"]]

    found = problem(write_csv(tmp_path, rows))

    assert found.code == "field_too_large"
    assert "line 3" in found.message


@pytest.mark.corpus
def test_an_unclosed_quote_running_to_the_end_is_too_large(tmp_path):
    path = tmp_path / "contacts.csv"
    with path.open("w", newline="") as file:
        file.write('name,note\nAna,"never closed\n')
        file.writelines("more text, on another line\n" for _ in range(400_000))

    found = problem(path)

    assert found.code == "field_too_large"
    assert "quote" in found.message


@pytest.mark.corpus
def test_a_line_longer_than_any_row_is_refused_before_it_is_read_whole(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"email\n" + b"a," * (9 << 20) + b"\n")

    found = problem(path)

    assert found.code == "field_too_large"
    assert "Line 2" in found.message


@pytest.mark.corpus
def test_invalid_utf8_late_in_the_file_names_the_byte(tmp_path):
    path = write_csv(tmp_path, rows_of(50_000), newline="\n")
    size = path.stat().st_size
    assert size > files.SAMPLE_BYTES
    with path.open("ab") as file:
        file.write(b"Bad \xff name,x@example.com,,\n")
    layout = detect(str(path), path.name)

    with pytest.raises(FileProblem) as raised:
        list(read_rows(str(path), layout))

    assert layout.encoding == "utf-8"
    assert raised.value.code == "invalid_text"
    assert f"near byte {size + 4:,}" in raised.value.message


# -- streaming ------------------------------------------------------------------------------------


def test_reading_a_large_csv_streams_it(tmp_path):
    note = "Met at the Jakarta trade fair; prefers WhatsApp, " * 4  # wide rows: 30 MB in fewer of them
    path = write_csv(tmp_path, ([*row, note] for row in rows_of(120_000)))
    assert os.path.getsize(path) > 30_000_000
    layout = detect(str(path), path.name)

    tracemalloc.start()
    try:
        count = sum(1 for _ in read_rows(str(path), layout))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 120_001
    assert peak < 10_000_000, f"{peak:,} bytes traced"


def test_rows_of_has_realistic_contacts():
    rows = list(rows_of(30))

    assert rows[0] == HEADER
    assert {"Сергей Иванов", "山田太郎", "محمد", "José Müller"} <= {row[0] for row in rows}
    assert {"+62 812-3456-7890", "0812 3456 7890", "(555) 010-0199"} <= {row[2] for row in rows}
    assert any("@" not in row[1] for row in rows[1:])
