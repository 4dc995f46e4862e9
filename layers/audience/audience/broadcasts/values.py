"""Per-recipient property values of a marketing broadcast, uploaded as a file (CSV, TSV, XLSX, XLS, ODS, or
a ZIP of one) whose header names a key column (`email` or `phone`) and one column per property.

Each row names a contact by its email or phone (read as the contact API reads them: lower-cased, E.164 in
the org's country) and gives it values; an empty cell leaves the property's default. The report counts
rows matched to a contact, rows naming no contact, invalid rows (with the first errors, by row and
column) and contacts named twice (the last row wins). A dry run reads and checks the file and writes
nothing. An upload replaces the earlier one whole: values are written under a new version and the
broadcast is then pointed at it, so planning never sees half an upload. The planner gives each recipient
row its contact's values; rendering uses them before the defaults.

Uploads are synchronous and bounded (MAX_ROWS rows, the API's body limit); larger per-contact data
belongs in contact custom fields (the imports take a million rows), which templates read as
`contact.fields.<name>`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from audience.broadcasts.models import MAX_STATIC
from audience.contacts.models import Identity
from audience.contacts.normalize import normalize_email, normalize_phone
from audience.errors import ValidationError
from audience.imports.files import detect, read_rows

MAX_ROWS = 20_000
MAX_ERRORS = 100
KEYS = ("email", "phone")


@dataclass
class ValuesReport:
    key: str
    columns: dict[str, str]  # file column → property
    ignored_columns: list[str]
    rows: int = 0
    matched: int = 0
    unmatched: int = 0
    invalid: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, row: int, column: str, value: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"row": row, "column": column, "value": value[:200], "message": message})

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "columns": self.columns,
            "ignored_columns": self.ignored_columns,
            "rows": self.rows,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "errors": sorted(self.errors, key=lambda e: e["row"]),
        }


def read_values(
    content: bytes,
    file_name: str,
    key: str,
    properties: Iterable[str],
    country: str,
    owners: Callable[[list[Identity]], dict[Identity, str]],
) -> tuple[dict[str, dict[str, str]], ValuesReport]:
    """The values of an uploaded file by contact id, and the report."""
    if key not in KEYS:
        raise ValidationError.for_field("key", key, "must be email or phone")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "upload")
        with open(path, "wb") as out:
            out.write(content)
        rows = read_rows(path, detect(path, file_name))
        header = next(rows, None)
        if not header:
            raise ValidationError.for_field("file", file_name, "is empty: the first row must name the columns")
        report = _report(header, key, list(properties))
        key_at = next(i for i, name in enumerate(header) if _name(name) == key)
        wanted: list[tuple[int, Identity, dict[str, str]]] = []
        for number, cells in enumerate(rows, start=2):
            if report.rows >= MAX_ROWS:
                raise ValidationError.for_field("file", file_name, f"has more than {MAX_ROWS:,} rows")
            if not any(c.strip() for c in cells):
                continue
            report.rows += 1
            found = _row(report, number, cells, key, key_at, header, country)
            if found is not None:
                wanted.append((number, found[0], found[1]))
    contacts = owners([identity for _, identity, _ in wanted])
    values: dict[str, dict[str, str]] = {}
    for number, identity, chosen in wanted:
        contact_id = contacts.get(identity)
        if contact_id is None:
            report.unmatched += 1
            report.error(number, key, identity.value, f"no contact has this {key}")
            continue
        if contact_id in values:
            report.duplicates += 1
        else:
            report.matched += 1
        values[contact_id] = chosen
    return values, report


def _name(header_cell: str) -> str:
    return header_cell.strip().lower()


def _report(header: list[str], key: str, properties: list[str]) -> ValuesReport:
    names = [_name(h) for h in header]
    if key not in names:
        raise ValidationError.for_field(
            "key", key, f"the file has no `{key}` column (its columns: {', '.join(header)})"
        )
    by_name = {p.lower(): p for p in properties}
    columns = {h: by_name[_name(h)] for h in header if _name(h) in by_name}
    if not columns:
        raise ValidationError.for_field(
            "file",
            None,
            f"no column is named after a property of the broadcast (its properties: {', '.join(properties) or 'none'})",
        )
    ignored = [h for h in header if _name(h) != key and h not in columns]
    return ValuesReport(key, columns, ignored)


def _row(
    report: ValuesReport, number: int, cells: list[str], key: str, key_at: int, header: list[str], country: str
) -> tuple[Identity, dict[str, str]] | None:
    raw = cells[key_at].strip() if key_at < len(cells) else ""
    try:
        if not raw:
            raise ValidationError(f"the {key} is empty")
        value = normalize_email(raw) if key == "email" else normalize_phone(raw, country).e164
    except ValidationError as error:
        report.invalid += 1
        report.error(number, key, raw, str(error))
        return None
    chosen: dict[str, str] = {}
    for at, column in enumerate(header):
        name = report.columns.get(column)
        if name is None or at >= len(cells) or not cells[at].strip():
            continue
        if len(cells[at]) > MAX_STATIC:
            report.invalid += 1
            report.error(number, column, cells[at], f"is longer than {MAX_STATIC} characters")
            return None
        chosen[name] = cells[at].strip()
    return Identity(key, value), chosen
