"""Name capture: the name a person shares in a message ("my name is Sari", "nama saya Sari", "me llamo Ana").

Pure functions, no I/O. Patterns are literal phrases (a sequence of words), never regular expressions an
org supplies: a message is split into words once and compared word by word, so the work is linear in the
(bounded) message and the phrase list, whatever an org configures (no ReDoS).

A phrase matches where a clause begins: the start of the message, after sentence punctuation or a line
break, or after greeting words ("Hi, I'm Sari", "Halo kak, nama saya Sari"). The name is the 1 to 3 words
that follow, up to punctuation, a number or a word of the language's stop list ("and", "dan", "from",
"mau"...); a first word on that list ("I'm fine", "saya mau", "I'm interested") means it was no name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from audience.errors import ValidationError

MAX_TEXT = 500  # characters of a message looked at
MAX_NAME = 60
MAX_NAME_WORDS = 3
MAX_LANGUAGES = 10
MAX_PHRASES = 20  # per language
MAX_PHRASE = 40  # characters
MAX_PHRASE_WORDS = 5
MAX_STOP_WORDS = 100  # per language
_GREETING_WORDS = 3  # at most this many greeting words before a phrase


def fold(word: str) -> str:
    """The comparable form of a word: NFKD without combining marks, case-folded, one apostrophe."""
    decomposed = unicodedata.normalize("NFKD", word.replace("\u2019", "'").replace("\u02bc", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _words(text: str) -> frozenset[str]:
    """A word list as the keys tokens are compared with (folded: "intéressé" matches "interesse")."""
    return frozenset(fold(word) for word in text.split())


DEFAULT_PHRASES: dict[str, tuple[str, ...]] = {
    "en": ("my name is", "my name's", "name's", "i am", "i'm", "call me", "this is"),
    "id": (
        "nama saya",
        "namaku",
        "nama aku",
        "nama gue",
        "perkenalkan nama saya",
        "perkenalkan saya",
        "panggil saya",
        "panggil aku",
        "saya",
        "aku",
    ),
    "es": ("me llamo", "mi nombre es", "soy"),
    "pt": ("meu nome é", "me chamo", "eu sou", "sou"),
    "fr": ("je m'appelle", "mon nom est", "moi c'est", "je suis"),
}
# Weak phrases also begin sentences that share no name ("I'm driving", "this is spam", "saya ambil 2", "soy
# vegetariano"): after one, the name must be written capitalised (in a cased script) and end its clause
# (end of message, punctuation or a line break). Any phrase not here is strong (an org's own ones too,
# unless they are one of these).
WEAK_PHRASES: frozenset[str] = frozenset(
    ("i am", "i'm", "this is", "call me", "saya", "aku", "soy", "sou", "eu sou", "je suis")
)

# Words that are no name: a first word here rejects the capture, a later one ends the name.
DEFAULT_STOP_WORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "a about afraid already also am an and any are as asking at available back bot busy but buying by calling "
        "can confused currently curious customer done for from fine glad going gonna good great happy have having "
        "he her here hi his hello home i in interested is it just late looking me member messaging my new no not "
        "now of ok okay on or ordering planning please ready really she sick so sorry still sure texting thank "
        "thanks that the there they this tired to today trying using very waiting want we well what who with "
        "wondering would writing yes you your coming leaving doing working important urgent wrong right correct "
        "amazing awesome cool nice bad terrible helpful regarding driving away later tomorrow tonight spam "
        "outside busy free online offline back"
    ),
    "id": _words(
        "ada adalah admin aja akan aku baik baru beli belum bisa boleh bukan butuh cari cuma dan dari dengan di "
        "dong dulu enggak ga gak gan hanya ingin ini itu juga kak kakak kan kasih ke kira kok lagi lg lupa mau "
        "makasih masih member membeli mencari min minta mo mohon nanya nggak ok oke order pelanggan pengen "
        "pengin perlu pesan pikir pingin punya rasa saja sakit sama sangat saya sedang senang setuju sih sudah "
        "sy tahu tanya tau tdk terima tertarik tidak udah udh untuk ya yang transfer bayar kirim tunggu cek coba "
        "konfirmasi daftar komplain lihat suka kurang kecewa puas bingung kemarin besok sekarang nanti orang "
        "tinggal kerja bekerja ambil minat cancel batal kangen jadi pakai"
    ),
    "es": _words(
        "bien buscando cliente con de del el en estoy feliz gracias interesada interesado la las lista listo los "
        "muy no nueva nuevo o para por que quiero si solo sí tengo un una y aqui aquí vegetariano vegetariana yo"
    ),
    "pt": _words(
        "aqui bem cliente com da das de do dos e em feliz interessada interessado muito nao não nova novo o "
        "obrigada obrigado ou para por pronta pronto procurando que quero sim so só tenho um uma eu vegetariano "
        "vegetariana"
    ),
    "fr": _words(
        "au bien client cliente content contente de du en et ici intéressé intéressée la le les merci non "
        "nouveau nouvelle ou oui pas que très un une"
    ),
}
# Not names in any language: what a phrase of any language ends at as well.
_COMMON_STOP = _words("and dan y e et und from dari de thanks terima makasih gracias obrigado obrigada merci")
GREETINGS = _words(
    "hi hello hey hiya halo hallo hai hei hola ola olá oi bonjour salut kak kakak min gan sis bro admin there "
    "assalamualaikum pagi siang sore malam selamat"
)
_CLAUSE_ENDS = frozenset('.,!?;:()[]{}"«»“”¡¿…\n')
_JOINERS = frozenset("'-\u2019\u02bc")
_NOT_ENDS = frozenset("&+@#/*=~_'-\u2019")  # marks that go on with a clause; other marks and emoji end it
_LANGUAGE = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # as written (NFKC)
    key: str  # compared: case-folded, without accents, apostrophes as '
    kind: str  # "word", "number" or "mark"


@dataclass(frozen=True, slots=True)
class Capture:
    name: str
    language: str
    phrase: str


@dataclass(frozen=True, slots=True)
class Patterns:
    """What to look for: phrases (as word keys) per language and each language's stop words."""

    phrases: tuple[tuple[str, tuple[str, ...]], ...]  # (language, phrase keys), longest phrases first
    stop_words: Mapping[str, frozenset[str]]
    weak: frozenset[tuple[str, ...]] = frozenset()  # the phrase keys that are weak (see WEAK_PHRASES)


def tokenize(text: str) -> list[Token]:
    """Words (letters and marks, joined by an inner apostrophe or hyphen), numbers and single marks."""
    text = unicodedata.normalize("NFKC", text)
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if _letter(char):
            start = i
            i += 1
            while i < n and (_letter(text[i]) or (text[i] in _JOINERS and i + 1 < n and _letter(text[i + 1]))):
                i += 1
            word = text[start:i]
            tokens.append(Token(word, fold(word), "word"))
        elif unicodedata.category(char).startswith("N"):
            start = i
            while i < n and unicodedata.category(text[i]).startswith("N"):
                i += 1
            tokens.append(Token(text[start:i], text[start:i], "number"))
        elif char == "\n" or not char.isspace():
            tokens.append(Token(char, char, "mark"))
            i += 1
        else:
            i += 1
    return tokens


def phrase_keys(phrase: str) -> tuple[str, ...]:
    """A phrase as the word keys it matches; empty when it is not 1 to 5 words of letters."""
    tokens = tokenize(phrase)
    if not tokens or len(tokens) > MAX_PHRASE_WORDS or any(t.kind != "word" for t in tokens):
        return ()
    return tuple(t.key for t in tokens)


def patterns(
    phrases: Mapping[str, Iterable[str]] | None = None,
    *,
    replace: bool = False,
    stop_words: Mapping[str, Iterable[str]] | None = None,
) -> Patterns:
    """The defaults with an org's own phrases per language added (or, with `replace`, instead of the
    defaults of each language the org lists) and its own stop words added."""
    chosen: dict[str, list[str]] = {lang: list(items) for lang, items in DEFAULT_PHRASES.items()}
    for lang, items in (phrases or {}).items():
        chosen[lang] = [*([] if replace else chosen.get(lang, [])), *items]
    found: list[tuple[str, tuple[str, ...]]] = []
    for lang, items in chosen.items():
        for phrase in items:
            keys = phrase_keys(phrase)
            if keys and (lang, keys) not in found:
                found.append((lang, keys))
    found.sort(key=lambda pair: -len(pair[1]))  # "nama saya" before "saya"
    stops = {lang: frozenset(words) for lang, words in DEFAULT_STOP_WORDS.items()}
    for lang, words in (stop_words or {}).items():
        stops[lang] = stops.get(lang, frozenset()) | {fold(w.strip()) for w in words if w.strip()}
    return Patterns(tuple(found), stops, frozenset(phrase_keys(p) for p in WEAK_PHRASES))


def check_settings(value: Mapping[str, object]) -> dict[str, object]:
    """An org's name capture settings, validated and normalised: `enabled` (default true), `phrases`
    ({language: [phrase, ...]}), `replace_defaults` (the phrases of each language listed replace that
    language's defaults instead of adding to them) and `stop_words` ({language: [word, ...]}, added)."""
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError.for_field("name_capture.enabled", enabled, "must be true or false")
    replace = value.get("replace_defaults", False)
    if not isinstance(replace, bool):
        raise ValidationError.for_field("name_capture.replace_defaults", replace, "must be true or false")
    result: dict[str, object] = {"enabled": enabled, "replace_defaults": replace}
    for name, limit, check in (("phrases", MAX_PHRASES, _check_phrase), ("stop_words", MAX_STOP_WORDS, _check_word)):
        given = value.get(name) or {}
        if not isinstance(given, Mapping) or len(given) > MAX_LANGUAGES:
            raise ValidationError.for_field(
                f"name_capture.{name}", None, f"must map at most {MAX_LANGUAGES} language codes to lists"
            )
        cleaned: dict[str, list[str]] = {}
        for lang, items in given.items():
            where = f"name_capture.{name}.{lang}"
            if not isinstance(lang, str) or not _LANGUAGE.fullmatch(lang):
                raise ValidationError.for_field(where, lang, "a language is a 2 or 3 letter code (en, id, jv)")
            if not isinstance(items, list) or len(items) > limit:
                raise ValidationError.for_field(where, None, f"must be a list of at most {limit}")
            words: list[str] = []
            for item in items:
                text = check(where, item)
                if text not in words:
                    words.append(text)
            cleaned[lang] = words
        result[name] = cleaned
    return result


def org_patterns(settings: Mapping[str, object] | None) -> Patterns | None:
    """The patterns an org's settings (as check_settings returns them) ask for; None when capture is off."""
    if not settings:
        return default_patterns()
    if settings.get("enabled") is False:
        return None
    phrases = settings.get("phrases") or {}
    stops = settings.get("stop_words") or {}
    if not phrases and not stops:
        return default_patterns()
    return patterns(phrases, replace=bool(settings.get("replace_defaults")), stop_words=stops)  # type: ignore[arg-type]


@cache
def default_patterns() -> Patterns:
    return patterns()


def extract(text: str | None, chosen: Patterns | None = None) -> Capture | None:
    """The name a message shares (with the default patterns unless given), or None."""
    if not text:
        return None
    chosen = chosen or default_patterns()
    tokens = tokenize(text[:MAX_TEXT])
    for start in _clause_starts(tokens):
        for lang, keys in chosen.phrases:
            end = start + len(keys)
            if tuple(t.key for t in tokens[start:end]) != keys or any(t.kind != "word" for t in tokens[start:end]):
                continue
            stops = chosen.stop_words.get(lang, frozenset()) | _COMMON_STOP
            name = _name_after(tokens, end, stops, weak=keys in chosen.weak)
            if name is not None:
                return Capture(name, lang, " ".join(keys))
    return None


def same_name(a: str | None, b: str | None) -> bool:
    """Whether two names are the same but for case, accents and spacing."""
    return bool(a and b) and [fold(w) for w in a.split()] == [fold(w) for w in b.split()]  # type: ignore[union-attr]


def part_of(name: str | None, other: str | None) -> bool:
    """Whether every word of `name` is a word of `other` (ignoring case and accents): "Sari" of "Sari Wijaya"."""
    if not name or not other:
        return False
    return {fold(w) for w in name.split()} <= {fold(w) for w in other.split()}


def clean_name(value: str | None, limit: int = 200) -> str | None:
    """A name from a platform profile as a contact's name: without control, format (bidi overrides, zero
    widths) or private characters, whitespace collapsed, at most `limit` characters; None unless it has a
    letter (a name of combining marks or symbols only is no name)."""
    if not value:
        return None
    kept = "".join(c for c in unicodedata.normalize("NFC", value) if unicodedata.category(c)[0] != "C" or c.isspace())
    text = " ".join(kept.split())[:limit].strip()
    return text if has_letter(text) else None


def has_letter(text: str) -> bool:
    return any(unicodedata.category(c).startswith("L") for c in text)


def title(word: str) -> str:
    """A name word as names are written: "sari" and "SARI" → "Sari", "o'brien" → "O'Brien", "jean-luc" →
    "Jean-Luc"; a word written in mixed case ("McDonald", "DeShawn") is kept as written."""
    if word != word.lower() and word != word.upper():
        return word
    parts = []
    for part in word.lower().split("-"):
        head, sep, tail = part.partition("'")
        if sep and len(head) == 1:  # O'Brien, D'Angelo; not Nur'aini
            parts.append(head.upper() + sep + tail[:1].upper() + tail[1:])
        else:
            parts.append(part[:1].upper() + part[1:])
    return "-".join(parts)


# -- helpers ------------------------------------------------------------------------------------------


def _check_phrase(where: str, item: object) -> str:
    if not isinstance(item, str) or len(item) > MAX_PHRASE or not phrase_keys(item):
        raise ValidationError.for_field(
            where, item, f"a phrase is 1 to {MAX_PHRASE_WORDS} words of letters, at most {MAX_PHRASE} characters"
        )
    return " ".join(item.split())


def _check_word(where: str, item: object) -> str:
    if not isinstance(item, str) or len(item) > MAX_PHRASE or len(phrase_keys(item)) != 1:
        raise ValidationError.for_field(
            where, item, f"a stop word is one word of letters, at most {MAX_PHRASE} characters"
        )
    return item.strip()


def _letter(char: str) -> bool:
    return unicodedata.category(char)[0] in "LM"


def _clause_starts(tokens: list[Token]) -> list[int]:
    """Where a phrase may begin: each clause's start, and after up to three greeting words there."""
    starts: list[int] = []
    at_clause = True
    for index, token in enumerate(tokens):
        if token.kind == "mark" and token.text in _CLAUSE_ENDS:
            at_clause = True
            continue
        if not at_clause:
            continue
        at_clause = False
        starts.append(index)
        skipped = index
        while (
            skipped < len(tokens)
            and skipped - index < _GREETING_WORDS
            and tokens[skipped].kind == "word"
            and tokens[skipped].key in GREETINGS
        ):
            skipped += 1
            starts.append(skipped)
    return list(dict.fromkeys(starts))


def _name_after(tokens: list[Token], start: int, stops: frozenset[str], *, weak: bool = False) -> str | None:
    words: list[str] = []
    for token in tokens[start : start + MAX_NAME_WORDS]:
        if token.kind != "word" or token.key in stops:
            break
        words.append(token.text)
    if not words or len(words[0]) < 2 or not has_letter("".join(words)):
        return None
    if any(fold(w).endswith("'s") for w in words):
        return None  # a possessive ("this is Sari's mom") names someone else
    if weak:
        first = words[0][0]
        if first.lower() != first.upper() and not first.isupper():
            return None  # "I'm driving", "saya ambil 2": a weak phrase needs a name written as one
        after = start + len(words)
        if after < len(tokens) and not (tokens[after].kind == "mark" and tokens[after].text not in _NOT_ENDS):
            return None  # "I'm Driving home": the clause goes on, so the word was no name
    name = " ".join(title(w) for w in words)
    while len(name) > MAX_NAME and len(words) > 1:
        words.pop()
        name = " ".join(title(w) for w in words)
    return name if len(name) <= MAX_NAME else None
