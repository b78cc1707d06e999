"""Identifiers in free text: what one instance's pseudonymization removes or replaces, found again
in the text it keeps, and cut out (PS3.15 E.3.5: information embedded in text "corresponding to
the Attribute information specified to be removed by the Profile ... shall also be removed").

`Identifiers` collects, during the walk of one instance, the values the profile removes or
replaces (`add(tag, vr, value)`); `cleaner()` then builds, once per instance, the matcher that
cleans every kept text of that instance. Matching is by whole tokens, never inside a word:

    token   a run of letters and digits ("prefers" is one token, so "Ref" never matches in it),
            or a dotted number (a UID "1.2.840.1", a date "01.01.1970") taken whole;
    term    a sequence of tokens; in text its tokens may be separated by up to MAX_GAP characters
            that are not letters or digits ("Doe, Jane" / "PAT-0042" / "1970-01-01");
    case    ignored (casefold).

What becomes a term, by value representation:

    PN      each part of each name (family, given, middle; prefixes and suffixes such as "Dr"
            are not identifiers), alone: names are found in any order ("Dr. Smith", "Jane DOE");
    DA, DT  the date in its usual spellings: 19700101, 1970-01-01 (any separator), 01.01.1970,
            01/01/1970 and 1/1/1970 (day or month first), 1 January 1970, Jan 1, 1970, 01-Jan-1970;
    AS      the age with a unit and/or a sex: 55y, 55 yo, 55 y/o, 55-year-old, 55F, 55 y F...;
    others  (LO, SH, UC, AE, UI, and ST, LT, UT up to 64 characters) the whole value and each part
            between ^ = , ; \\ or a line break, when it has at least MIN_CHARS letters or digits.

Codes (CS), numbers, times and binary values are not looked for in text: alone they say nothing
(PatientSex only qualifies an age: "55F"). Private attributes count only when they are person names.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from pydicom.multival import MultiValue

TOKEN = re.compile(r"\d+(?:\.\d+)+|[^\W_]+")
DOTTED = re.compile(r"\d+(?:\.\d+)+")
SEGMENTS = re.compile(r"[\^=,;\\\r\n]+")
MAX_GAP = 3                 # characters between two tokens of one term ("Doe, Jane", "01 / 01 / 1970")
MIN_CHARS = 3               # letters and digits a term needs (a StudyID "1" or a station "CT" is no term)
MIN_NAME_PART = 2           # "Li", "Wu" are family names
LONG_TEXT = 64              # a removed ST/LT/UT longer than this is a narrative, not an identifier
PLACEHOLDER = "XXX"         # never longer than what it replaces: the value keeps within its VR's size

PATIENT_SEX = 0x00100040
NAME_NOISE = frozenset("dr mr mrs ms miss mx prof md phd jr sr ii iii iv rn de da di du del della der den "
                       "van von la le el al bin ibn st".split())
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
AGE_UNITS = {"Y": ("y", "yo", "yr", "yrs", "year", "years"), "M": ("mo", "mos", "month", "months"),
             "W": ("w", "wk", "wks", "week", "weeks"), "D": ("d", "day", "days")}
SEX_WORDS = {"F": ("f", "female"), "M": ("m", "male")}
PHRASE_VRS = frozenset({"LO", "SH", "UC", "AE", "UI"})
LONG_VRS = frozenset({"ST", "LT", "UT"})
WANTED_VRS = PHRASE_VRS | LONG_VRS | {"PN", "DA", "DT", "AS"}


def tokens(text: str) -> tuple[str, ...]:
    return tuple(m.group().casefold() for m in TOKEN.finditer(text))


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value if v not in (None, "")]
    if isinstance(value, bytes):
        return []
    return [str(value)]


class Identifiers:
    """The values removed or replaced in one instance, as terms to look for in its text.

    `add` only notes a value (the walk calls it for every removed value); the terms are made in
    `cleaner()`, once, and only when the instance has text to clean."""

    def __init__(self) -> None:
        self._noted: list[tuple[int, str, Any]] = []

    def add(self, tag: int, vr: str, value: Any) -> None:
        if (vr in WANTED_VRS or tag == PATIENT_SEX) and value is not None and value != "":
            self._noted.append((tag, vr, value))

    def terms(self) -> set[tuple[str, ...]]:
        terms: set[tuple[str, ...]] = set()
        dates: set[str] = set()
        ages: set[str] = set()
        sexes: set[str] = set()
        for tag, vr, value in self._noted:
            values = _values(value)
            if vr == "PN":
                for text in values:
                    _name_terms(text, terms)
            elif vr in ("DA", "DT"):
                for text in values:
                    dates.add(text.strip()[:8])
                    if vr == "DT" and len(text.strip()) > 8:     # the date and time written as one token
                        _phrase_terms(text, terms)
            elif vr == "AS":
                ages.update(v.strip().upper() for v in values)
            elif tag == PATIENT_SEX:
                sexes.update(v.strip().upper() for v in values)
            elif vr == "UI":
                for uid in values:
                    uid = uid.strip(" \x00")
                    if DOTTED.fullmatch(uid):            # a UID is one token
                        terms.add((uid,))
                    else:
                        _phrase_terms(uid, terms)
            elif vr in PHRASE_VRS or (vr in LONG_VRS and all(len(v) <= LONG_TEXT for v in values)):
                for text in values:
                    _phrase_terms(text, terms)
                    if SEGMENTS.search(text):
                        for part in SEGMENTS.split(text):
                            _phrase_terms(part, terms)
        for date in dates:
            _date_terms(date, terms)
        for age in ages:
            _age_terms(age, sexes, terms)
        return terms

    def cleaner(self) -> "TextCleaner":
        return TextCleaner(self.terms())


def _name_terms(text: str, terms: set) -> None:
    for group in text.split("="):                     # alphabetic, ideographic, phonetic
        for component in group.split("^")[:3]:        # family, given, middle (not prefix, suffix)
            for part in tokens(component):
                if len(part) >= MIN_NAME_PART and part not in NAME_NOISE and not part.isdigit():
                    terms.add((part,))


def _phrase_terms(text: str, terms: set) -> None:
    term = tokens(text)
    if term and sum(len(t) for t in term) >= MIN_CHARS:
        terms.add(term)


def _date_terms(date: str, terms: set) -> None:
    """19700101 as it may be written: the tokens of each spelling (a dotted date is one token)."""
    if len(date) != 8 or not date.isdigit() or not 1 <= int(date[4:6]) <= 12 or not 1 <= int(date[6:]) <= 31:
        return
    y, m, d = date[:4], date[4:6], date[6:]
    mi, di = str(int(m)), str(int(d))
    terms.add((date,))
    for month, day in ((m, d), (mi, di)):
        terms.add((y, month, day))                    # 1970-01-01, 1970/1/1, 1970 01 01
        terms.add((f"{y}.{month}.{day}",))            # 1970.01.01
        for a, b in ((day, month), (month, day)):
            terms.add((a, b, y))                      # 01/01/1970, 1-1-1970 (day or month first)
            terms.add((f"{a}.{b}.{y}",))              # 01.01.1970
    name = MONTHS[int(m) - 1]
    for month in (name, name[:3]):
        for day in (d, di):
            terms.add((day, month, y))                # 1 January 1970, 01-Jan-1970
            terms.add((month, day, y))                # January 1, 1970


def _age_terms(age: str, sexes: set, terms: set) -> None:
    """055Y as it may be written: 55y, 55 yo, 55 y/o, 55-year-old, 55F, 55 y F, 55-year-old female."""
    found = re.fullmatch(r"(\d{1,3})([DWMY])", age)
    if not found:
        return
    sex_words = [w for s in (sorted(s for s in sexes if s in SEX_WORDS) or sorted(SEX_WORDS)) for w in SEX_WORDS[s]]
    units = [(u,) for u in AGE_UNITS[found.group(2)]] + ([("y", "o")] if found.group(2) == "Y" else [])
    terms.add((age.casefold(),))
    for n in {found.group(1), str(int(found.group(1)))}:
        for sex in sex_words:
            terms.add((n + sex,))                     # 55f
            terms.add((n, sex))                       # 55 F
        for unit in units:
            glued = n + "".join(unit)
            for head in ((glued,), (n,) + unit):      # 55yo / 55 yo
                terms.add(head)
                terms.add(head + ("old",))
                for sex in sex_words:
                    terms.add(head + (sex,))
                    terms.add(head + ("old", sex))
            for sex in sex_words:
                terms.add((glued + sex,))             # 55yf


class TextCleaner:
    """Cuts a fixed set of terms out of text, by whole tokens. Built once per instance."""

    def __init__(self, terms: Iterable[tuple[str, ...]]) -> None:
        index: dict[str, list[tuple[str, ...]]] = {}
        for term in terms:
            index.setdefault(term[0], []).append(term)
        for candidates in index.values():
            candidates.sort(key=len, reverse=True)             # the longest spelling first
        self.index = index

    def clean(self, text: str) -> str:
        if not self.index or not text:
            return text
        found = [(m.start(), m.end(), m.group().casefold()) for m in TOKEN.finditer(text)]
        pieces: list[str] = []
        last, i, count = 0, 0, len(found)
        while i < count:
            length = self._match(found, i)
            if length:
                start, end = found[i][0], found[i + length - 1][1]
                pieces += [text[last:start], PLACEHOLDER[:end - start]]
                last, i = end, i + length
            else:
                i += 1
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def _match(self, found: list, i: int) -> int:
        candidates: Optional[list] = self.index.get(found[i][2])
        if not candidates:
            return 0
        for term in candidates:
            length = len(term)
            if i + length > len(found):
                continue
            if all(found[i + k][2] == term[k] and found[i + k][0] - found[i + k - 1][1] <= MAX_GAP
                   for k in range(1, length)):
                return length
        return 0

    def clean_value(self, value: Any) -> Any:
        if value is None or value == "":
            return value
        if isinstance(value, (list, tuple, MultiValue)):
            return [self.clean(str(v)) for v in value]
        return self.clean(str(value))
