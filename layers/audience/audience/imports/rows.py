"""The row pipeline: the cells of a data row become a validated, normalised record (a contact's fields, or a
do-not-contact entry), or a rejection with its reason; and the identities already seen in the file, so
that a row repeating an earlier row's phone or email is reported as a duplicate instead of written twice.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from dataclasses import dataclass
from typing import Any

from audience.contacts.normalize import normalize_email, normalize_phone
from audience.contacts.service import MAX_CUSTOM_FIELDS_BYTES, check_tags, field_value
from audience.errors import ValidationError
from audience.exports.csvfile import restore
from audience.imports.models import Mapping

MAX_CELL_CHARS = 32_767  # what a spreadsheet cell holds
MAX_NAME_CHARS = 200
_TRUE = {"true", "yes", "y", "1", "ya", "si", "sí", "oui", "ja"}
_FALSE = {"false", "no", "n", "0", "tidak", "non", "nein"}
_TAG_SPLIT = re.compile(r"[,;|]")
_WORD = (1 << 64) - 1
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

# Rejection reasons (the error report's `reason` column).
INVALID_EMAIL = "invalid_email"
INVALID_PHONE = "invalid_phone"
MISSING_IDENTIFIER = "missing_identifier"
INVALID_FIELD = "invalid_field"
INVALID_TAG = "invalid_tag"
INVALID_NAME = "invalid_name"
INVALID_IDENTIFIER = "invalid_identifier"
TOO_MANY_CELLS = "too_many_cells"
CELL_TOO_LONG = "cell_too_long"
DUPLICATE_ROW = "duplicate"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str
    column: str | None = None


class RowMapper:
    """Turns the cells of one data row into a record for the chunk files, following a mapping."""

    def __init__(
        self,
        kind: str,
        mapping: Mapping,
        *,
        names: list[str],
        field_types: dict[str, str],
        extra_tags: list[str],
    ) -> None:
        self._kind = kind
        self._width = len(names)
        self._names = names
        self._country = mapping.default_country
        self._single = {c.target: c.index for c in mapping.columns if c.target not in ("tag", "custom_field")}
        self._tag_columns = [c.index for c in mapping.columns if c.target == "tag"]
        self._fields = [(c.index, c.field, field_types[c.field]) for c in mapping.columns if c.field]
        self._extra_tags = extra_tags

    def map(self, cells: list[str]) -> tuple[dict[str, Any], list[str]] | Rejection:
        """(record, identity keys) or the rejection of the row. A cell this project's exports wrote with a
        leading quote (a neutralised formula start, such as `'+628...`) is read back without it."""
        cells = [restore(c) if c[:1] == "'" else c for c in cells]
        if len(cells) > self._width and any(c.strip() for c in cells[self._width :]):
            return Rejection(TOO_MANY_CELLS, f"the row has {len(cells)} cells but the header has {self._width}")
        for index, cell in enumerate(cells):
            if len(cell) > MAX_CELL_CHARS:
                return Rejection(
                    CELL_TOO_LONG,
                    f"{self._name(index)}: the cell is {len(cell)} characters long; at most {MAX_CELL_CHARS}",
                    self._name(index),
                )
        if self._kind == "contacts":
            return self._contact(cells)
        return self._dnc(cells)

    # -- contacts -----------------------------------------------------------------------------------

    def _contact(self, cells: list[str]) -> tuple[dict[str, Any], list[str]] | Rejection:
        width = len(cells)
        record: dict[str, Any] = {}
        single = self._single
        for target in ("full_name", "first_name", "last_name"):
            index = single.get(target)
            if index is not None and index < width:
                text = " ".join(cells[index].split())
                if text:
                    if len(text) > MAX_NAME_CHARS:
                        return Rejection(
                            INVALID_NAME, f"{self._name(index)}: at most {MAX_NAME_CHARS} characters", self._name(index)
                        )
                    record[target] = text
        identities: list[str] = []
        index = single.get("phone")
        if index is not None and index < width and cells[index].strip():
            try:
                phone = normalize_phone(cells[index], self._country)
            except ValidationError as error:
                return Rejection(INVALID_PHONE, f"{self._name(index)}: {error.fields[0]['message']}", self._name(index))
            record["phone"] = phone.e164
            record["country"] = phone.country
            if phone.type:
                record["phone_type"] = phone.type
            identities.append("phone:" + phone.e164)
        index = single.get("email")
        if index is not None and index < width and cells[index].strip():
            try:
                email = normalize_email(cells[index])
            except ValidationError as error:
                return Rejection(INVALID_EMAIL, f"{self._name(index)}: {error.fields[0]['message']}", self._name(index))
            record["email"] = email
            identities.append("email:" + email)
        if not identities:
            return Rejection(MISSING_IDENTIFIER, "the row has neither an email nor a phone")
        if self._fields:
            fields: dict[str, Any] = {}
            for index, name, type_ in self._fields:
                text = cells[index].strip() if index < width else ""
                if not text:
                    continue
                try:
                    fields[name] = field_value(name, type_, _typed(name, type_, text))
                except ValidationError as error:
                    return Rejection(INVALID_FIELD, f"{self._name(index)}: {error.fields[0]['message']}", name)
            if fields:
                if sum(len(str(v)) for v in fields.values()) * 4 > MAX_CUSTOM_FIELDS_BYTES:
                    size = len(json.dumps(fields, ensure_ascii=False).encode("utf-8"))
                    if size > MAX_CUSTOM_FIELDS_BYTES:
                        return Rejection(
                            INVALID_FIELD,
                            f"custom fields take {size} bytes; at most {MAX_CUSTOM_FIELDS_BYTES} in all",
                            "custom_fields",
                        )
                record["custom_fields"] = fields
        tags = list(self._extra_tags)
        for index in self._tag_columns:
            if index < width and cells[index].strip():
                tags.extend(t.strip() for t in _TAG_SPLIT.split(cells[index]) if t.strip())
        if tags:
            try:
                record["tags"] = check_tags(tags)
            except ValidationError as error:
                return Rejection(INVALID_TAG, f"tags: {error.fields[0]['message']}", "tags")
        return record, identities

    # -- do-not-contact entries ---------------------------------------------------------------------

    def _dnc(self, cells: list[str]) -> tuple[dict[str, Any], list[str]] | Rejection:
        from audience.compliance.dnc import normalize_channel, normalize_identifier, normalize_sender, normalize_source

        def cell(target: str) -> str | None:
            index = self._single.get(target)
            return cells[index].strip() or None if index is not None and index < len(cells) else None

        try:
            channel = normalize_channel(cell("channel"))
            kind, value = normalize_identifier(cell("identifier") or "", channel, self._country)
            sender = normalize_sender(cell("sender"))
            source = normalize_source(cell("source"), "import")
        except ValidationError as error:
            problem = error.fields[0] if error.fields else {"field": None, "message": error.message}
            return Rejection(INVALID_IDENTIFIER, f"{problem['field']}: {problem['message']}", problem["field"])
        record = {"identifier_type": kind, "identifier": value, "channel": channel, "sender": sender, "source": source}
        return record, [f"{kind}:{value}:{channel or '*'}:{sender or '*'}"]

    def _name(self, index: int) -> str:
        return self._names[index] if index < len(self._names) else f"Column {index + 1}"


def _typed(name: str, type_: str, text: str) -> Any:
    """A cell's text as the value a custom field of `type_` takes (validated by the contact rules next)."""
    if type_ == "number":
        compact = text.replace(",", "").replace(" ", "")
        if not _NUMBER.match(compact):
            raise ValidationError.for_field(name, text, "must be a number")
        value = float(compact)
        if not math.isfinite(value):
            raise ValidationError.for_field(name, text, "must be a finite number")
        return int(value) if value.is_integer() and abs(value) < 2**53 and "." not in compact else value
    if type_ == "boolean":
        folded = text.lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise ValidationError.for_field(name, text, "must be true or false (yes/no, 1/0)")
    if type_ == "date":
        return text[:10] if len(text) > 10 and text[10] in "T " and text[11:].strip("0:. ") == "" else text
    if type_ == "datetime" and len(text) >= 19 and text[-1] != "Z" and "+" not in text[10:] and "-" not in text[10:]:
        return text + "Z"  # a spreadsheet date-time carries no zone: read it as UTC
    return text


class IdentitySet:
    """The identities seen so far in a file: 64-bit hashes in an open-addressing table of machine words
    (8 bytes per slot, at most half full), so a million-row file costs tens of MB, not the hundreds a set
    of strings would. The hash is Python's own string hash (SipHash, keyed per process: the table lives
    for one pass over one file). Two identities sharing a 64-bit hash (odds about 1 in 10^7 for a
    million rows) would make the later row a duplicate."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def add(self, key: str) -> bool:
        """Add `key`; False when it was there already."""
        digest = (hash(key) & _WORD) or 1
        slots, mask = self._slots, self._mask
        position = digest & mask
        while True:
            current = slots[position]
            if current == 0:
                break
            if current == digest:
                return False
            position = (position + 1) & mask
        slots[position] = digest
        self._used += 1
        if self._used * 2 > mask:
            self._grow()
        return True

    def __contains__(self, key: str) -> bool:
        digest = (hash(key) & _WORD) or 1
        slots, mask = self._slots, self._mask
        position = digest & mask
        while (current := slots[position]) != 0:
            if current == digest:
                return True
            position = (position + 1) & mask
        return False

    def _grow(self) -> None:
        old = self._slots
        capacity = (self._mask + 1) * 2
        self._slots = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        slots, mask = self._slots, self._mask
        for digest in old:
            if digest:
                position = digest & mask
                while slots[position] != 0:
                    position = (position + 1) & mask
                slots[position] = digest
