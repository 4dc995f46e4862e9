"""Column mapping: the target each header suggests, whether the first row is a header, and the checks a
client's mapping must pass before a dry run or an import."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from audience.errors import ValidationError
from audience.imports.models import KINDS, ColumnMap, Mapping

CONTACT_TARGETS: tuple[str, ...] = ("full_name", "first_name", "last_name", "email", "phone", "custom_field", "tag")
DNC_TARGETS: tuple[str, ...] = ("identifier", "channel", "sender", "source")
SKIP = "skip"
EXISTING: tuple[str, ...] = ("update", "skip")
MAX_IMPORT_TAGS = 10
_COUNTRY = re.compile(r"^[A-Z]{2}$")

# Header words, folded (lower case, no accents, no punctuation), in the languages customers' files use.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "full_name": (
        "name",
        "full name",
        "fullname",
        "contact name",
        "contact",
        "customer name",
        "display name",
        "nama",
        "nama lengkap",
        "nombre completo",
        "nom complet",
        "nome completo",
        "vollstandiger name",
        "naam",
    ),
    "first_name": (
        "first name",
        "firstname",
        "first",
        "given name",
        "forename",
        "nama depan",
        "nombre",
        "prenom",
        "vorname",
        "nome",
        "voornaam",
    ),
    "last_name": (
        "last name",
        "lastname",
        "last",
        "surname",
        "family name",
        "nama belakang",
        "apellido",
        "apellidos",
        "nom",
        "nachname",
        "cognome",
        "achternaam",
    ),
    "email": (
        "email",
        "e mail",
        "email address",
        "e mail address",
        "mail",
        "correo",
        "correo electronico",
        "courriel",
        "surel",
    ),
    "phone": (
        "phone",
        "phone number",
        "mobile",
        "mobile phone",
        "mobile number",
        "cell",
        "cell phone",
        "telephone",
        "tel",
        "whatsapp",
        "whatsapp number",
        "wa",
        "msisdn",
        "no hp",
        "nomor hp",
        "nomor telepon",
        "telepon",
        "hp",
        "telefono",
        "movil",
        "celular",
        "telefone",
        "telefon",
        "handy",
        "portable",
    ),
    "tag": ("tag", "tags", "label", "labels", "group", "groups", "list", "lists", "segment"),
}
_DNC_SYNONYMS: dict[str, tuple[str, ...]] = {
    "identifier": ("identifier", "phone", "email", "phone number", "email address", "mobile", "contact"),
    "channel": ("channel",),
    "sender": ("sender", "from", "sender id"),
    "source": ("source", "reason"),
}
_LOOKUP = {word: target for target, words in _SYNONYMS.items() for word in words}
_DNC_LOOKUP = {word: target for target, words in _DNC_SYNONYMS.items() for word in words}
_EMAIL_LIKE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-]{7,20}$")


def fold(header: str) -> str:
    text = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def column_names(header: list[str] | None, width: int) -> list[str]:
    """The names columns are shown with: the header's cells, or `Column 1`... for a file without one."""
    names = []
    for index in range(width):
        cell = (header[index].strip() if header and index < len(header) else "") or f"Column {index + 1}"
        names.append(cell[:200])
    return names


def looks_like_header(first: list[str], following: list[list[str]]) -> bool:
    """Whether the first row names the columns: none of its cells is an email or a phone or a number,
    while the rows after it hold such values (or there is nothing to compare with)."""
    cells = [c.strip() for c in first if c.strip()]
    if not cells:
        return False
    if any(_EMAIL_LIKE.match(c) or _PHONE_LIKE.match(c) for c in cells):
        return False
    return not all(_is_number(c) for c in cells)


def suggest(name: str, samples: list[str], kind: str, custom_fields: Iterable[str]) -> dict[str, Any]:
    """The suggested target of a column from its header (then its sample values)."""
    folded = fold(name)
    if kind == "do_not_contact":
        target = _DNC_LOOKUP.get(folded)
        return {"target": target or SKIP}
    by_field = {fold(f): f for f in custom_fields}
    if folded in by_field:
        return {"target": "custom_field", "field": by_field[folded]}
    if folded in _LOOKUP:
        return {"target": _LOOKUP[folded]}
    for word, target in _LOOKUP.items():  # "Work Email", "Phone (mobile)"
        if (
            (len(word) > 3 and word in folded.split(" "))
            or folded.startswith(word + " ")
            or folded.endswith(" " + word)
        ):
            return {"target": target}
    values = [s.strip() for s in samples if s.strip()]
    if values and all(_EMAIL_LIKE.match(v) for v in values):
        return {"target": "email"}
    if values and all(_PHONE_LIKE.match(v) for v in values) and not all(_is_number(v) and len(v) < 7 for v in values):
        return {"target": "phone"}
    return {"target": SKIP}


def check_mapping(
    data: dict[str, Any],
    *,
    kind: str,
    width: int,
    custom_fields: dict[str, str],
    default_country: str,
) -> Mapping:
    """The client's mapping, checked against the file's width and the org's custom fields; every problem is
    a ValidationError naming its path (`columns[2].field`)."""
    if kind not in KINDS:
        raise ValidationError.for_field("kind", kind, f"must be one of {', '.join(KINDS)}")
    columns_in = data.get("columns")
    if not isinstance(columns_in, list) or not columns_in:
        raise ValidationError.for_field("columns", columns_in, "must list the columns to import")
    targets = CONTACT_TARGETS if kind == "contacts" else DNC_TARGETS
    columns: list[ColumnMap] = []
    seen_index: set[int] = set()
    single: dict[str, int] = {}
    for position, entry in enumerate(columns_in):
        path = f"columns[{position}]"
        if not isinstance(entry, dict):
            raise ValidationError.for_field(path, None, "must be an object with index and target")
        index, target, field_name = entry.get("index"), entry.get("target"), entry.get("field")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < width:
            raise ValidationError.for_field(f"{path}.index", index, f"must be a column index from 0 to {width - 1}")
        if index in seen_index:
            raise ValidationError.for_field(f"{path}.index", index, "is mapped twice")
        seen_index.add(index)
        if target == SKIP:
            continue
        if target not in targets:
            raise ValidationError.for_field(f"{path}.target", target, f"must be one of {', '.join((*targets, SKIP))}")
        if target == "custom_field":
            if field_name not in custom_fields:
                raise ValidationError.for_field(f"{path}.field", field_name, "is not a custom field of this org")
        elif target != "tag":
            if target in single:
                raise ValidationError.for_field(f"{path}.target", target, "is already mapped from another column")
            single[target] = index
            field_name = None
        else:
            field_name = None
        columns.append(ColumnMap(index, target, field_name))
    fields_used = [c.field for c in columns if c.field]
    if len(fields_used) != len(set(fields_used)):
        raise ValidationError.for_field("columns", None, "a custom field is mapped from two columns")
    if kind == "contacts" and not ({"email", "phone"} & set(single)):
        raise ValidationError.for_field("columns", None, "map at least one column to email or phone")
    if kind == "do_not_contact" and "identifier" not in single:
        raise ValidationError.for_field("columns", None, "map a column to identifier (a phone or an email)")

    country = data.get("default_country") or default_country
    if not isinstance(country, str) or not _COUNTRY.match(country.upper()):
        raise ValidationError.for_field("default_country", country, "must be an ISO 3166 alpha-2 code such as ID")
    existing = data.get("existing", "update")
    if existing not in EXISTING:
        raise ValidationError.for_field("existing", existing, f"must be one of {', '.join(EXISTING)}")
    tags = data.get("tags") or []
    if not isinstance(tags, list) or len(tags) > MAX_IMPORT_TAGS:
        raise ValidationError.for_field("tags", tags, f"must be a list of at most {MAX_IMPORT_TAGS} tags")
    segment_id = data.get("segment_id")
    if segment_id is not None and (not isinstance(segment_id, str) or not segment_id):
        raise ValidationError.for_field("segment_id", segment_id, "must be a segment id")
    return Mapping(
        columns=columns,
        default_country=country.upper(),
        existing=existing,
        segment_id=segment_id,
        tags=[t.strip() for t in tags if isinstance(t, str)] if kind == "contacts" else [],
    )


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True
