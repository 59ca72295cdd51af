"""Write PDFs for tests, examples and benchmarks (fpdf2 writes, pypdf encrypts)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "what",
    "will",
    "more",
    "if",
    "no",
    "out",
    "so",
    "said",
    "can",
    "who",
    "about",
    "up",
    "time",
    "into",
    "only",
    "some",
    "could",
    "new",
    "them",
    "man",
    "other",
    "then",
    "two",
    "first",
    "may",
    "any",
    "like",
    "now",
    "my",
    "such",
    "make",
    "over",
    "our",
    "even",
    "most",
    "me",
    "state",
    "after",
    "also",
    "made",
    "many",
    "did",
    "must",
    "before",
    "back",
    "see",
    "through",
    "way",
    "where",
    "get",
    "much",
    "go",
    "well",
    "your",
    "know",
    "should",
    "down",
    "work",
    "year",
    "because",
    "come",
    "people",
    "just",
    "say",
    "each",
    "those",
    "take",
    "day",
    "good",
    "how",
    "long",
    "very",
    "little",
    "world",
    "part",
    "system",
    "number",
    "water",
    "between",
    "against",
    "contract",
    "clause",
    "party",
    "obligation",
    "revenue",
    "quarter",
    "report",
    "analysis",
    "model",
    "context",
    "document",
    "section",
    "figure",
    "table",
    "result",
    "method",
    "value",
    "measure",
    "sample",
    "period",
    "payment",
    "notice",
    "term",
    "agreement",
    "schedule",
]
_LINE_H = 4.5  # mm, for 10pt Helvetica


def _latin1(text: str) -> str:
    # fpdf2's core fonts (Helvetica) only encode latin-1; replace the rest instead of raising.
    return text.encode("latin-1", "replace").decode("latin-1")


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    # Greedy word wrap measured once per word: fpdf2's multi_cell re-measures the line per
    # character (a 300-page PDF took ~4 s); this and pdf.text() take ~0.8 s.
    lines: list[str] = []
    space = pdf.get_string_width(" ")
    for raw in text.split("\n"):
        line, used = "", 0.0
        for word in raw.split(" "):
            w = pdf.get_string_width(word)
            while w > width:  # a token longer than the line: hard-break it
                cut = max(1, int(len(word) * width / w))
                if line:
                    lines.append(line)
                    line, used = "", 0.0
                lines.append(word[:cut])
                word = word[cut:]
                w = pdf.get_string_width(word)
            if line and used + space + w > width:
                lines.append(line)
                line, used = "", 0.0
            line, used = (f"{line} {word}", used + space + w) if line else (word, w)
        lines.append(line)
    return lines


def _pdf_bytes(pages: list[str], title: str | None = None) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=10)
    if title is not None:
        pdf.set_title(_latin1(title))
    width = pdf.w - pdf.l_margin - pdf.r_margin
    bottom = pdf.h - pdf.b_margin
    for text in pages:
        pdf.add_page()  # one input string = exactly one page
        y = pdf.t_margin + _LINE_H
        for line in _wrap(pdf, _latin1(text), width):
            if y > bottom:  # fail loudly: silently clipped text would confuse a test's expectations
                raise ValueError(f"page {pdf.page} does not fit on one A4 page; shorten it")
            if line:
                pdf.text(pdf.l_margin, y, line)
            y += _LINE_H
    return bytes(pdf.output())


def make_pdf(path: str | Path, pages: list[str], title: str | None = None) -> Path:
    """A text PDF, one page per string ("" gives an empty page); ValueError if a string overflows A4."""
    path = Path(path)
    path.write_bytes(_pdf_bytes(pages, title))
    return path


def make_encrypted_pdf(
    path: str | Path,
    pages: list[str],
    user_password: str = "secret",
    algorithm: str = "AES-256",
    owner_password: str = "owner-secret",
) -> Path:
    """Encrypted text PDF. user_password="" gives a file any reader opens without a password."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf_bytes(pages))))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm=algorithm)
    path = Path(path)
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def make_corrupt_pdf(path: str | Path) -> Path:
    """A valid PDF cut to a third of its bytes, then garbage: header present, body and xref gone."""
    data = _pdf_bytes(lorem_pages(3, words_per_page=150))
    rng = random.Random(1)
    garbage = bytes(rng.randrange(256) for _ in range(512))
    path = Path(path)
    path.write_bytes(data[: len(data) // 3] + garbage)
    return path


def make_scanned_pdf(path: str | Path, n_pages: int = 2) -> Path:
    """Pages that only carry drawings, like a scan without a text layer."""
    pdf = FPDF(format="A4")
    for i in range(n_pages):
        pdf.add_page()
        pdf.set_fill_color(40 + 20 * i, 40, 40)
        for row in range(20):
            pdf.rect(20, 20 + row * 12, 170 - (row * 37 + i * 11) % 60, 8, style="F")
    path = Path(path)
    path.write_bytes(bytes(pdf.output()))
    return path


def _word(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.06:
        return str(rng.randint(1, 9999))
    if r < 0.08:
        return f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}%"
    return rng.choice(_WORDS)


def lorem_pages(n: int, words_per_page: int = 350, seed: int = 0) -> list[str]:
    """Deterministic pseudo-prose pages with paragraphs and numbers; up to ~700 words fit one A4 page."""
    rng = random.Random(seed)
    pages = []
    for p in range(n):
        paragraphs, left = [], words_per_page
        while left > 0:
            para_len = min(left, rng.randint(25, 110))
            left -= para_len
            sentences, words = [], []
            for _ in range(para_len):
                words.append(_word(rng))
                if len(words) >= rng.randint(6, 18):
                    sentences.append(" ".join(words).capitalize() + ".")
                    words = []
            if words:
                sentences.append(" ".join(words).capitalize() + ".")
            paragraphs.append(" ".join(sentences))
        pages.append(f"Page {p + 1} (seed {seed})\n\n" + "\n\n".join(paragraphs))
    return pages
