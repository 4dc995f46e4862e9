"""The do-not-contact list: add, remove, list (filters, sort), look up, and import from CSV.

An entry is contact information (an E.164 phone, an email, or a channel user id), optionally narrowed to
one channel (blank: every channel) and one sender (blank: every sender), with where it came from. The
same (identifier, channel, sender) is one entry: adding it again returns the entry that is there.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from audience import clock, ids
from audience.compliance.keys import SHARDS, entry_pk, entry_sk, identifier_partition, list_partition, lookup_keys
from audience.compliance.models import ALL_CHANNELS, DNC_SOURCES, EMAIL, PHONE, DncEntry
from audience.compliance.repository import DoNotContactRepository
from audience.contacts.models import CHANNELS
from audience.contacts.normalize import normalize_email, normalize_phone
from audience.contacts.repository import decode_cursor, encode_cursor
from audience.errors import ValidationError
from audience.exports.csvfile import BOM, restore
from audience.orgs.repository import OrgsRepository

MAX_IMPORT_ROWS = 10_000
MAX_IDENTIFIER = 256
MAX_SENDER = 128
SORTS: tuple[str, ...] = ("-added_at", "added_at", "identifier", "-identifier")
PHONE_CHANNELS = ("whatsapp", "sms")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CURSOR = re.compile(r"^.{1,600}#dnc_[0-9a-z]{26}$", re.S)
_ROUNDS = 8  # bounded work per list request when filters drop entries; the cursor lets the client go on


@dataclass(frozen=True, slots=True)
class DncFilter:
    channel: str | None = None  # a channel name, or `all` for entries that cover every channel
    source: str | None = None
    sender: str | None = None
    query: str | None = None  # identifier prefix, compared without case
    sort: str | None = None  # one of SORTS; identifier order when `query` is given

    def matches(self, entry: DncEntry) -> bool:
        return (
            (self.channel is None or (entry.channel or ALL_CHANNELS) == self.channel)
            and (self.source is None or entry.source == self.source)
            and (self.sender is None or entry.sender == self.sender)
            and (self.query is None or entry.identifier.lower().startswith(self.query))
        )


@dataclass(frozen=True, slots=True)
class DncList:
    items: list[DncEntry]
    next_cursor: str | None
    total: int | None


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, in a dry run, would do): counts and one error per rejected row."""

    dry_run: bool
    rows: int = 0
    added: int = 0
    existing: int = 0
    duplicate: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


# -- normalisation ----------------------------------------------------------------------------------


def normalize_channel(value: str | None, name: str = "channel") -> str | None:
    """A channel name, or None for every channel (blank or `all`)."""
    if value is None or not value.strip() or value.strip().lower() == ALL_CHANNELS:
        return None
    channel = value.strip().lower()
    if channel not in CHANNELS:
        raise ValidationError.for_field(
            name, value, f"must be one of {', '.join(CHANNELS)}, or blank (or `all`) for every channel"
        )
    return channel


def normalize_sender(value: str | None, name: str = "sender") -> str | None:
    """A sender (a phone number id, a from address, a bot...), compared exactly; emails in lower case.
    Blank means every sender."""
    if value is None or not value.strip():
        return None
    sender = value.strip()
    if len(sender) > MAX_SENDER or _CONTROL.search(sender) or sender == "*":
        raise ValidationError.for_field(
            name, value, f"must be 1 to {MAX_SENDER} printable characters (and not `*`); blank for every sender"
        )
    return sender.lower() if "@" in sender else sender


def normalize_source(value: str | None, default: str, name: str = "source") -> str:
    if value is None or not value.strip():
        return default
    source = value.strip().lower()
    if source not in DNC_SOURCES:
        raise ValidationError.for_field(name, value, f"must be one of {', '.join(DNC_SOURCES)}")
    return source


def normalize_identifier(raw: Any, channel: str | None, country: str, name: str = "identifier") -> tuple[str, str]:
    """(type, value) of an entry's contact information, read for `channel`.

    An email (it has an `@`) is checked and lower-cased; on whatsapp, sms or every channel anything else
    is a phone, read with `country` and stored in E.164; on another channel (telegram, messenger, ...) it
    is that channel's user id, as given.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError.for_field(name, raw, "is required: a phone number, an email or a channel user id")
    value = raw.strip()
    if len(value) > MAX_IDENTIFIER or _CONTROL.search(value):
        raise ValidationError.for_field(name, raw, f"{raw!r} must be 1 to {MAX_IDENTIFIER} printable characters")
    if channel is not None and channel not in (*PHONE_CHANNELS, EMAIL):
        return channel, value
    if "@" in value:
        if channel in PHONE_CHANNELS:
            raise ValidationError.for_field(name, raw, f"{raw!r} is an email address, which {channel} cannot reach")
        try:
            return EMAIL, normalize_email(value, field=name)
        except ValidationError as error:
            raise ValidationError.for_field(name, raw, f"{raw!r} is not a valid email address") from error
    if channel == EMAIL:
        raise ValidationError.for_field(name, raw, f"{raw!r} is not an email address, which the email channel needs")
    try:
        return PHONE, normalize_phone(value, country, field=name).e164
    except ValidationError:
        raise ValidationError.for_field(
            name, raw, f"{raw!r} is not a phone number (read with default country {country}) or an email address"
        ) from None


# -- the service ------------------------------------------------------------------------------------


class DoNotContactService:
    """The do-not-contact list of an org; every method takes the org id the caller is authorised for."""

    def __init__(self, repository: DoNotContactRepository, orgs: OrgsRepository, *, default_country: str) -> None:
        self._repository = repository
        self._orgs = orgs
        self._default_country = default_country

    # -- writes -------------------------------------------------------------------------------------

    def add(
        self,
        org_id: str,
        identifier: Any,
        *,
        channel: str | None = None,
        sender: str | None = None,
        source: str | None = None,
    ) -> tuple[DncEntry, bool]:
        """Add an entry; (entry, True) when it is new, (the entry already there, False) otherwise."""
        entry = self._build(org_id, identifier, channel, sender, source, self._country(org_id), default="manual")
        existing = self._repository.add(entry)
        return (existing, False) if existing is not None else (entry, True)

    def remove(self, org_id: str, entry_id: str) -> None:
        self._repository.remove(self._repository.get_by_id(org_id, entry_id))

    def import_csv(self, org_id: str, data: bytes | str, *, dry_run: bool) -> ImportReport:
        """Add the entries of a CSV file (header row; columns `identifier` and optionally `channel`,
        `sender`, `source`; others are ignored) of at most 10,000 rows.

        Each rejected row is reported with its row number as a spreadsheet shows it (the header is row 1),
        the value and the reason; the other rows are added. Rows already on the list, or repeating an
        earlier row, are counted and left alone. A dry run reports the same and writes nothing.
        """
        header, rows = _read_csv(data)
        country = self._country(org_id)
        report = ImportReport(dry_run=dry_run, rows=len(rows))
        planned: dict[tuple[str, str], DncEntry] = {}
        for number, cells in rows:
            record = dict(zip(header, (restore(c.strip()) for c in cells), strict=False))
            try:
                entry = self._build(
                    org_id,
                    record.get("identifier", ""),
                    record.get("channel"),
                    record.get("sender"),
                    record.get("source"),
                    country,
                    default="import",
                )
            except ValidationError as error:
                problem = error.fields[0] if error.fields else {"value": None, "message": error.message}
                report.invalid += 1
                report.errors.append({"row": number, "value": problem["value"], "reason": problem["message"]})
                continue
            key = (entry_pk(org_id, entry.identifier_type, entry.identifier), entry_sk(entry.channel, entry.sender))
            if key in planned:
                report.duplicate += 1
                continue
            planned[key] = entry
        existing = self._repository.get_many(planned.keys())
        fresh = [entry for key, entry in planned.items() if key not in existing]
        report.existing = len(existing)
        if dry_run:
            report.added = len(fresh)
            return report
        outcomes = self._repository.add_many(fresh)
        report.added = sum(1 for o in outcomes if o is None)
        report.existing += len(fresh) - report.added
        return report

    # -- reads --------------------------------------------------------------------------------------

    def get(self, org_id: str, entry_id: str) -> DncEntry:
        return self._repository.get_by_id(org_id, entry_id)

    def list(self, org_id: str, filters: DncFilter, *, cursor: str | None, take: int) -> DncList:
        """A page of entries: newest first by default, or in the order `sort` names; with `query`
        (an identifier prefix) in identifier order. The total comes with the page when a maintained
        counter answers it exactly (no filter, or only one of channel, source)."""
        filters = self._checked(filters)
        sort = filters.sort or ("identifier" if filters.query else "-added_at")
        forward = not sort.startswith("-")
        if sort.endswith("identifier"):
            partitions = [identifier_partition(org_id, s) for s in range(SHARDS)]
            lower, upper = filters.query or " ", (filters.query or "") + "\U0010ffff"
        else:
            kind, value = "all", ""
            if filters.channel is not None:
                kind, value = "channel", filters.channel
            elif filters.source is not None:
                kind, value = "source", filters.source
            partitions = [list_partition(org_id, kind, value, s) for s in range(SHARDS)]
            lower, upper = "0", "~"  # around every `{timestamp}#{id}`
        after = decode_cursor(cursor, _CURSOR)
        found: list[DncEntry] = []
        next_key: str | None = None
        for _ in range(_ROUNDS):
            rows, more = self._repository.index_page(
                partitions, lower=lower, upper=upper, forward=forward, after=after, limit=take
            )
            entries = self._repository.get_many(key for _, key in rows)
            used = 0
            for sort_key, key in rows:
                used += 1
                after = sort_key
                entry = entries.get(key)
                if entry is not None and filters.matches(entry):
                    found.append(entry)
                    if len(found) == take:
                        break
            has_rest = more or used < len(rows)
            if len(found) == take or not has_rest:
                next_key = after if has_rest else None
                break
        else:
            next_key = after
        total = None
        if not filters.query and filters.sender is None and (filters.channel is None or filters.source is None):
            counter = "total"
            if filters.channel is not None:
                counter = f"c#{filters.channel}"
            elif filters.source is not None:
                counter = f"s#{filters.source}"
            total = self._repository.counters(org_id).get(counter, 0)
        return DncList(found, encode_cursor(next_key) if next_key else None, total)

    def matching(
        self, org_id: str, identifiers: Iterable[tuple[str, str]], *, channel: str, sender: str | None
    ) -> list[DncEntry]:
        """The entries that keep (type, value) identifiers from being contacted on `channel` by `sender`:
        those whose channel is blank or `channel` and whose sender is blank or `sender` (point reads)."""
        wanted = [key for kind, value in identifiers for key in lookup_keys(org_id, kind, value, channel, sender)]
        return list(self._repository.get_many(wanted).values()) if wanted else []

    # -- internals ----------------------------------------------------------------------------------

    def _country(self, org_id: str) -> str:
        return self._orgs.get_org(org_id).default_country or self._default_country

    def _build(
        self,
        org_id: str,
        identifier: Any,
        channel: str | None,
        sender: str | None,
        source: str | None,
        country: str,
        *,
        default: str,
    ) -> DncEntry:
        channel_ = normalize_channel(channel)
        kind, value = normalize_identifier(identifier, channel_, country)
        return DncEntry(
            id=ids.new_id("dnc"),
            org_id=org_id,
            identifier_type=kind,
            identifier=value,
            channel=channel_,
            sender=normalize_sender(sender),
            source=normalize_source(source, default),
            added_at=clock.now_iso(),
        )

    def _checked(self, filters: DncFilter) -> DncFilter:
        channel = filters.channel
        if channel is not None:
            channel = normalize_channel(channel) or ALL_CHANNELS
        source = normalize_source(filters.source, "") if filters.source is not None else None
        sender = normalize_sender(filters.sender) if filters.sender is not None else None
        query = filters.query.strip().lower() if filters.query and filters.query.strip() else None
        if query is not None and (len(query) > MAX_IDENTIFIER or _CONTROL.search(query)):
            raise ValidationError.for_field("q", filters.query, f"must be 1 to {MAX_IDENTIFIER} printable characters")
        if filters.sort is not None and filters.sort not in SORTS:
            raise ValidationError.for_field("sort", filters.sort, f"must be one of {', '.join(SORTS)}")
        if query and filters.sort is not None and filters.sort.endswith("added_at"):
            raise ValidationError.for_field(
                "sort", filters.sort, "a search (`q`) lists in identifier order: use identifier or -identifier"
            )
        return DncFilter(channel, source, sender, query, filters.sort)


def _read_csv(data: bytes | str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The lower-cased header and the non-blank rows with their row numbers (header = row 1)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValidationError.for_field(
                "file", f"byte {error.start}", "is not UTF-8 text (save the CSV as UTF-8)"
            ) from None
    text = data.removeprefix(BOM)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise ValidationError.for_field("file", None, f"is not a readable CSV file: {error}") from None
    if not records:
        raise ValidationError.for_field("file", None, "is empty: a header row with an `identifier` column is needed")
    header = [cell.strip().lower() for cell in records[0]]
    if "identifier" not in header:
        raise ValidationError.for_field("file", ",".join(records[0])[:200], "the header row has no `identifier` column")
    rows = [(number, cells) for number, cells in enumerate(records[1:], start=2) if any(c.strip() for c in cells)]
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValidationError.for_field(
            "file", f"{len(rows)} rows", f"at most {MAX_IMPORT_ROWS} rows per import; split the file"
        )
    return header, rows
