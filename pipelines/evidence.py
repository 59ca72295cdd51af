"""Checking a quote the model gives as evidence against the source text it read.

A quote is looked up in the units (pages or files) of the window: verbatim
first, then with whitespace runs made one space and words broken at a line
end joined again (``exam-\\nple`` reads ``example``), as PDF text extraction
breaks lines where the page did. A found quote is located by its unit (the
page, or the file and its line range) and its character offsets in that
unit's text; a quote not found is reported as such, never dropped. Pure
functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.records import Unit

# A hyphen (or soft hyphen) ending a line between two word characters; a soft hyphen
# anywhere; any whitespace run. One pattern, so each character is looked at once.
_NOISE = re.compile(r"(?<=\w)[-\u00ad][ \t]*\r?\n\s*(?=\w)|\u00ad|\s+")


@dataclass(frozen=True)
class Located:
    unit: int | str  # the page number, or the file's path
    start: int  # character offsets of the quote in that unit's text
    end: int
    exact: bool  # found verbatim, not only after normalising
    lines: tuple[int, int] | None = None  # a file's 1-based line range

    @property
    def where(self) -> str:
        if isinstance(self.unit, int):
            return f"page {self.unit}"
        first, last = self.lines or (1, 1)
        return f"{self.unit}:{first}-{last}"


def normalise(text: str) -> tuple[str, list[int]]:
    """``text`` with every whitespace run one space and line-end hyphenation removed, and for
    each character of the result its offset in ``text``."""
    chars: list[str] = []
    at: list[int] = []
    pos = 0
    for m in _NOISE.finditer(text):
        chars.extend(text[pos : m.start()])
        at.extend(range(pos, m.start()))
        if m.group().isspace():
            chars.append(" ")
            at.append(m.start())
        pos = m.end()
    chars.extend(text[pos:])
    at.extend(range(pos, len(text)))
    return "".join(chars), at


def locate(quote: str, units: Sequence[Unit]) -> Located | None:
    """Where ``quote`` is in ``units``: verbatim in the first unit that holds it, else after
    normalising both; None when it is in none (or is blank)."""
    wanted = quote.strip()
    if not wanted:
        return None
    for unit in units:
        start = unit.text.find(wanted)
        if start >= 0:
            return _located(unit, start, start + len(wanted), exact=True)
    wanted = normalise(wanted)[0].strip()
    if not wanted:
        return None
    for unit in units:
        text, at = normalise(unit.text)
        i = text.find(wanted)
        if i >= 0:
            return _located(unit, at[i], at[i + len(wanted) - 1] + 1, exact=False)
    return None


def _located(unit: Unit, start: int, end: int, exact: bool) -> Located:
    lines = None
    if isinstance(unit.ref, str):  # a file: its line range
        lines = (unit.text.count("\n", 0, start) + 1, unit.text.count("\n", 0, end - 1) + 1)
    return Located(unit.ref, start, end, exact, lines)
