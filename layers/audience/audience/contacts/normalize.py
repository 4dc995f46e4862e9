"""Normalisation of phones (E.164), emails, names and search terms.

phonenumbers and email-validator are imported on first use: functions that never validate
input (queue consumers, the stream) do not pay for them at cold start.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from audience.errors import ValidationError

_DIGITS = re.compile(r"\D+")
_PHONE_CHARS = re.compile(r"^[\d\s()+\-./]+$")


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    country: str | None
    national_digits: str
    type: str | None = None  # phonenumbers' number type in lower case: mobile, fixed_line, voip...


def normalize_phone(raw: str, default_country: str, field: str = "phone") -> Phone:
    """Parse `raw` in `default_country` (or as international) and return it in E.164.

    Accepts national forms (`0812-3456-7890`), international forms (`+62 812 3456 7890`) and
    international digits without the plus (`6281234567890`).
    """
    import phonenumbers

    value = raw.strip()
    if not value or len(value) > 32 or not _PHONE_CHARS.match(value):
        raise ValidationError.for_field(field, raw, "is not a phone number")
    candidates = [value]
    digits = _DIGITS.sub("", value)
    if not value.startswith("+") and not value.startswith("0") and len(digits) >= 8:
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_country)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return Phone(
                e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                country=phonenumbers.region_code_for_number(number),
                national_digits=str(number.national_number),
                type=_number_type(number),
            )
    raise ValidationError.for_field(
        field, raw, f"is not a valid phone number (read with default country {default_country})"
    )


def _number_type(number: object) -> str | None:
    import phonenumbers

    kind = phonenumbers.number_type(number)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        return None
    return str(phonenumbers.PhoneNumberType.to_string(kind)).lower()


def phone_type(e164: str) -> str | None:
    """The number type of a stored (E.164) phone; None when the library cannot tell."""
    import phonenumbers

    try:
        return _number_type(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None


def normalize_email(raw: str, field: str = "email") -> str:
    """Validate the syntax (no DNS) and return the address in lower case."""
    from email_validator import EmailNotValidError, validate_email

    value = raw.strip()
    if not value or len(value) > 254:
        raise ValidationError.for_field(field, raw, "is not an email address")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValidationError.for_field(field, raw, str(error)) from None
    return result.normalized.lower()


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 phone (`+6281234567890` -> `81234567890`).

    Country calling codes are prefix-free, so the code is the one of its first 1 to 3 digits that is a
    code; what follows is the national number. Only a number whose national part starts with 0 (Italy
    keeps its leading zero in E.164) goes through a full parse.
    """
    import phonenumbers

    for length in (1, 2, 3):
        if int(e164[1 : 1 + length] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            rest = e164[1 + length :]
            if rest and rest[0] != "0" and rest.isdigit():
                return rest
            break
    return str(phonenumbers.parse(e164).national_number)


def fold(text: str) -> str:
    """Lower case without accents, with runs of whitespace collapsed: the form search terms take."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def search_query(raw: str) -> str:
    """The folded form of a search query; phone-like queries keep only their digits."""
    value = raw.strip()
    if _PHONE_CHARS.match(value) and any(c.isdigit() for c in value):
        # National forms start with a trunk prefix (0812...); the index holds the number without it.
        return _DIGITS.sub("", value).lstrip("0") or "0"
    return fold(value)
