"""Contact files for the import benchmarks: rows as customers' exports have them, written as CSV.

Names in several scripts (Latin with accents, Cyrillic, CJK, Arabic, Thai, Korean); emails in mixed case,
some with a `+tag`, about 2% invalid and 5% missing; phones in the forms people type them (Indonesian
national `0812-...`, international `+62 812 ...`, international digits without the plus `62812...`,
landlines with an area code, and numbers from other countries), about 3% invalid and 5% missing; a tag
column (none, one or several tags with `;` or `|`); a city and a number of orders (with thousands
separators, sometimes empty). About 1% of the rows repeat the phone or the email of an earlier row. Every
other row has its own phone and email, so an import of the file creates one contact per valid row.

The wide form (`wide=True`, for the memory benchmark) adds a company and a free-text note, about 200
bytes a row in all. Rows are generated one at a time from a seeded generator: the same arguments give
the same file.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import random
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEADER = ["First Name", "Last Name", "Email", "Phone", "Tags", "City", "Orders"]
WIDE_HEADER = ["First Name", "Last Name", "Email", "Phone", "City", "Company", "Notes"]
FIELD_TYPES = {"city": "string", "orders": "number"}
WIDE_FIELD_TYPES = {"city": "string", "company": "string", "notes": "string"}

# (first names, last names, ASCII forms for email local parts)
_PEOPLE = (
    (("Siti", "Budi", "Dewi", "Agus", "Putri", "Rizky"), ("Rahayu", "Santoso", "Wijaya", "Saputra", "Lestari")),
    (("José", "María", "Zoë", "François", "Jürgen", "Søren"), ("Müller", "Pérez", "O'Brien", "Dupont", "Ñúñez")),
    (("Nguyễn", "Trần", "Lê"), ("Văn An", "Thị Hoa", "Minh Đức")),
    (("Сергей", "Анна", "Дмитрий"), ("Иванов", "Петрова", "Смирнов")),
    (("太郎", "花子", "健"), ("山田", "田中", "佐藤")),
    (("محمد", "فاطمة", "أحمد"), ("الحسن", "عبدالله", "الزهراء")),
    (("สมชาย", "สุดา"), ("ใจดี", "รักไทย")),
    (("민준", "서연"), ("김", "이", "박")),
)
_PEOPLE_WEIGHTS = (6, 2, 1, 1, 1, 1, 1, 1)  # mostly Indonesian names, as the product's customers have
_LOCAL_PARTS = ("siti", "budi", "dewi", "agus", "jose", "maria", "zoe", "anna", "taro", "hana", "ahmad", "minjun")
_DOMAINS = ("gmail.com", "yahoo.co.id", "Example.com", "outlook.com", "perusahaan.co.id", "mail.ru", "naver.com")
_INVALID_EMAILS = ("siti.rahayu@", "budi.example.com", "dewi@@example.com", "agus@example", "x y@example.com")
_INVALID_PHONES = ("12345", "0000", "+62 12", "call me", "08-12")
_TAGS = ("", "", "vip", "customer", "vip;newsletter", "promo-nov|b2b", "reseller", "newsletter; app-user")
_CITIES = ("Jakarta", "Surabaya", "Bandung", "Medan", "Москва", "東京", "São Paulo", "Kuala Lumpur", "")
_COMPANIES = ("PT Sinar Jaya", "CV Maju Bersama", "Toko Berkah", "Acme Corp", "株式会社山田", "Ромашка Трейд", "")
_NOTE_WORDS = (
    "asked", "about", "delivery", "to", "the", "warehouse", "prefers", "WhatsApp", "after", "5pm", "met", "at",
    "expo", "Jakarta", "follow", "up", "next", "week", "pelanggan", "setia", "sejak", "2019", "diskon", "ulang",
)  # fmt: skip


def _phone(rng: random.Random, i: int) -> str:
    """A valid phone unique to row `i`, in one of the forms people type."""
    n = f"{i:08d}"
    form = rng.random()
    if form < 0.35:
        return f"0812-{n[:4]}-{n[4:]}"  # national, dashes
    if form < 0.55:
        return f"0813 {n[:4]} {n[4:]}"  # national, spaces
    if form < 0.65:
        return f"0857{n}"  # national, digits only
    if form < 0.80:
        return f"+62 811 {n[:4]} {n[4:]}"  # international
    if form < 0.88:
        return f"62821{n}"  # international without the plus
    if form < 0.91:
        return f"(021) 5{n[1:4]} {n[4:]}"  # Jakarta landline
    if form < 0.94:
        return f"+60 12-{n[2:5]} {n[5:]}{i % 10}"  # Malaysia
    if form < 0.97:
        return f"+65 9{n[1:4]} {n[4:]}"  # Singapore
    return f"+1 415 {200 + (i // 10_000) % 800} {n[4:]}"  # United States


def contact_rows(n: int, *, seed: int = 20261123, wide: bool = False, clean: bool = False) -> Iterator[list[str]]:
    """The header then `n` data rows; `clean` leaves out invalid and missing values and repeated rows, so
    that every row is a valid contact of its own."""
    rng = random.Random(seed)
    yield list(WIDE_HEADER if wide else HEADER)
    earlier: list[tuple[str, str]] = []
    for i in range(n):
        firsts, lasts = rng.choices(_PEOPLE, _PEOPLE_WEIGHTS)[0]
        first, last = rng.choice(firsts), rng.choice(lasts)
        local = f"{rng.choice(_LOCAL_PARTS)}.{i}"
        if rng.random() < 0.15:
            local = local.capitalize()
        if rng.random() < 0.05:
            local += "+shop"
        email = f"{local}@{rng.choice(_DOMAINS)}"
        phone = _phone(rng, i)
        roll = rng.random()
        if roll < 0.02 and not clean:
            email = rng.choice(_INVALID_EMAILS)
        elif roll < 0.07:
            email = ""
        roll = rng.random()
        if roll < 0.03 and not clean:
            phone = rng.choice(_INVALID_PHONES)
        elif roll < 0.08 and email:
            phone = ""
        if earlier and rng.random() < 0.01 and not clean:  # a row repeating an earlier row's phone or email
            old_email, old_phone = rng.choice(earlier)
            if old_phone:
                phone = old_phone
            else:
                email = old_email
        if i % 97 == 0:
            earlier.append((email, phone))
        city = rng.choice(_CITIES)
        if wide:
            note = " ".join(rng.choice(_NOTE_WORDS) for _ in range(rng.randint(16, 24)))
            yield [first, last, email, phone, city, rng.choice(_COMPANIES), note]
        else:
            orders = rng.choice(("", "0", "1", "3", "12", "1,250", "7"))
            yield [first, last, email, phone, rng.choice(_TAGS), city, orders]


def write_csv(
    path: Path, n: int, *, seed: int = 20261123, wide: bool = False, clean: bool = False, extra_tag: str | None = None
) -> Path:
    """`n` rows as a UTF-8 CSV with CRLF line ends (as spreadsheets export), streamed to `path`;
    `extra_tag` is added to every row's tags (an update of contacts imported from the same rows)."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        for number, row in enumerate(contact_rows(n, seed=seed, wide=wide, clean=clean)):
            if extra_tag is not None and number:
                row[4] = f"{row[4]};{extra_tag}" if row[4] else extra_tag
            writer.writerow(row)
    return path


def mapping(*, wide: bool = False) -> dict[str, Any]:
    """The column mapping a client would send for the file (PUT .../mapping)."""
    columns: list[dict[str, Any]] = [
        {"index": 0, "target": "first_name"},
        {"index": 1, "target": "last_name"},
        {"index": 2, "target": "email"},
        {"index": 3, "target": "phone"},
    ]
    if wide:
        columns += [
            {"index": 4, "target": "custom_field", "field": "city"},
            {"index": 5, "target": "custom_field", "field": "company"},
            {"index": 6, "target": "custom_field", "field": "notes"},
        ]
    else:
        columns += [
            {"index": 4, "target": "tag"},
            {"index": 5, "target": "custom_field", "field": "city"},
            {"index": 6, "target": "custom_field", "field": "orders"},
        ]
    return {"columns": columns, "default_country": "ID"}


def code_version() -> str:
    """The commit measured, with `+changes` when the layer has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        found = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return found.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "layers", "functions") else "")


def write_results(path: Path, benchmark: str, fields: dict[str, Any], *, code: str | None = None) -> dict[str, Any]:
    """Write a benchmark's results as JSON, after what every run records (name, date, the code measured,
    Python, the machine); returns what was written."""
    output = {
        "benchmark": benchmark,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code": code or code_version(),
        "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        **fields,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
    root = Path(__file__).resolve().parent.parent
    print(f"\nresults: {path.relative_to(root) if path.is_relative_to(root) else path}")
    return output
