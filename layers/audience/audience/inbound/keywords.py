"""Opt-out and opt-in keywords: a whole message, compared without case, character width (NFKC) or
surrounding punctuation ("Stop!", " stop ", and a full-width STOP all match STOP)."""

from __future__ import annotations

import re
import unicodedata

# As carriers and CTIA guidelines use them; STOPALL leaves every channel at once.
OPT_OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
OPT_IN = ("START", "UNSTOP")
EVERY_CHANNEL = "STOPALL"
MAX_KEYWORDS = 50
MAX_KEYWORD = 40
_EDGES = re.compile(r"^[\s\W_]+|[\s\W_]+$", re.UNICODE)


def fold(text: str) -> str:
    """The comparable form of a message or keyword."""
    return _EDGES.sub("", unicodedata.normalize("NFKC", text).casefold())


def classify(
    text: str | None, *, opt_out: tuple[str, ...] = (), opt_in: tuple[str, ...] = ()
) -> tuple[str, bool] | None:
    """("opt_out" | "opt_in", every_channel) when the whole message is a keyword, else None.

    `opt_out` and `opt_in` are the org's own keywords, in any language, added to the defaults."""
    if not text or len(text) > 4 * MAX_KEYWORD:
        return None
    word = fold(text)
    if not word:
        return None
    if word == fold(EVERY_CHANNEL):
        return "opt_out", True
    if word in {fold(k) for k in (*OPT_OUT, *opt_out)}:
        return "opt_out", False
    if word in {fold(k) for k in (*OPT_IN, *opt_in)}:
        return "opt_in", False
    return None
