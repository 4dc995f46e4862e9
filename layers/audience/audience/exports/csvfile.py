"""CSV files people open in spreadsheets: UTF-8 with a BOM, RFC 4180 quoting, formulas neutralised.

A spreadsheet runs a cell as a formula when it starts with `=`, `+`, `-` or `@`, and some also when it
starts with a tab or a carriage return (CSV or formula injection). Such a cell is written with a single
quote in front (OWASP's advice): `=HYPERLINK(...)` becomes `'=HYPERLINK(...)`, which a spreadsheet shows
as text and never evaluates.

Phones in E.164 start with `+` and so are neutralised too: `+6281234567890` is written
`'+6281234567890`. The quote is what keeps the number readable: unquoted, a spreadsheet reads the cell as
the formula `+6281234567890` and shows `6.28123E+12`, dropping the `+` (and digits beyond 15). With the
quote Excel and LibreOffice treat the cell as text and show the number in full (Excel hides the quote, as
it does for a typed `'`; a text editor or some other tools show it). Imports of this project read a
leading quote before one of those characters as this marker and drop it (`restore`), so an exported file
imports back unchanged. Negative numbers in custom fields become text (`'-5`) for the same reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """`cell` as a spreadsheet will show it, never run it: a single quote before a formula start."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def restore(cell: str) -> str:
    """The value `neutralise` was given: drops the quote it adds (and only that quote)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


class CsvWriter:
    """Rows written to an in-memory buffer as RFC 4180 CSV (CRLF, minimal quoting), taken out as UTF-8
    bytes chunk by chunk so that a large file never sits in memory at once."""

    def __init__(self, *, bom: bool = True) -> None:
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, dialect="excel", lineterminator="\r\n")
        self._pending = BOM if bom else ""
        self.rows = 0

    def writerow(self, cells: Iterable[str]) -> None:
        self._writer.writerow([neutralise(cell) for cell in cells])
        self.rows += 1

    @property
    def size(self) -> int:
        """Characters buffered (a lower bound of the bytes `take` returns)."""
        return self._text.tell()

    def take(self) -> bytes:
        """Everything written since the last `take`, as UTF-8."""
        data = (self._pending + self._text.getvalue()).encode("utf-8")
        self._pending = ""
        self._text.seek(0)
        self._text.truncate()
        return data
