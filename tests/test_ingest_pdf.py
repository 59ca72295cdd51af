from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from pipelines.ingest.limits import IngestLimits
from pipelines.ingest.pdf import _normalize_page_text, load_pdf
from pipelines.records import Document, SourceRef
from tests.pdfgen import (
    lorem_pages,
    make_corrupt_pdf,
    make_encrypted_pdf,
    make_pdf,
    make_scanned_pdf,
)


def _ref(path: Path) -> SourceRef:
    return SourceRef(uri=str(path), root=str(path.parent), rel_path=path.name, kind="pdf")


def _failed(doc: Document) -> str:
    assert doc.status == "failed" and doc.units == []
    assert doc.kind == "pdf" and doc.reason
    return doc.reason


def test_text_pdf_one_unit_per_page(tmp_path: Path) -> None:
    pages = ["Alpha page about contracts.\nSecond line 42.", "", "Gamma: revenue 3.5% up.\n\n\n\nEnd."]
    path = make_pdf(tmp_path / "a.pdf", pages, title="Quarterly Report")
    doc = load_pdf(_ref(path))
    assert doc.status == "ok" and doc.reason is None
    assert [u.ref for u in doc.units] == [1, 2, 3]
    assert "Alpha page about contracts." in doc.units[0].text and "Second line 42." in doc.units[0].text
    assert doc.units[1].text == ""  # empty pages are kept, so page numbers stay true
    assert "Gamma: revenue 3.5% up." in doc.units[2].text and "End." in doc.units[2].text
    assert doc.title == "Quarterly Report"
    assert doc.meta == {"page_count": 3}
    assert doc.doc_id == _ref(path).doc_id and doc.rel_path == "a.pdf"
    assert Document.from_row(doc.to_row()) == doc


def test_generated_pages_roundtrip_and_no_title(tmp_path: Path) -> None:
    pages = lorem_pages(12, seed=3)
    doc = load_pdf(_ref(make_pdf(tmp_path / "lorem.pdf", pages)))
    assert doc.status == "ok" and doc.title is None
    for n, (unit, src) in enumerate(zip(doc.units, pages, strict=True), start=1):
        assert unit.ref == n and unit.text.startswith(f"Page {n} (seed 3)")
        assert unit.text.split() == src.split()  # same words; only line breaks differ


def test_lorem_pages_deterministic() -> None:
    assert lorem_pages(3, seed=7) == lorem_pages(3, seed=7) != lorem_pages(3, seed=8)
    assert any(ch.isdigit() for ch in lorem_pages(1)[0].split("\n", 1)[1])


def test_empty_user_password_aes_opens(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "e.pdf", ["Open sesame text."], user_password="")
    doc = load_pdf(_ref(path))
    assert doc.status == "ok"
    assert doc.units[0].text == "Open sesame text."


@pytest.mark.parametrize("algorithm", ["AES-256", "AES-128", "RC4-128"])
def test_password_required_is_failed(tmp_path: Path, algorithm: str) -> None:
    path = make_encrypted_pdf(tmp_path / "e.pdf", ["Hidden text."], algorithm=algorithm)
    assert "encrypted" in _failed(load_pdf(_ref(path)))


def test_unsupported_encryption_handler_is_encrypted_not_corrupt(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "e.pdf", ["Hidden text."])
    # Same length as /Standard so offsets stay valid: a handler pypdf does not implement.
    path.write_bytes(path.read_bytes().replace(b"/Filter /Standard", b"/Filter /PubSec12"))
    assert _failed(load_pdf(_ref(path))).startswith("encrypted: cannot decrypt: NotImplementedError")


def test_corrupt_is_failed(tmp_path: Path) -> None:
    reason = _failed(load_pdf(_ref(make_corrupt_pdf(tmp_path / "c.pdf"))))
    assert reason.startswith("corrupt PDF: ") and "\n" not in reason and len(reason) < 240


def test_scanned_is_failed_with_page_count(tmp_path: Path) -> None:
    doc = load_pdf(_ref(make_scanned_pdf(tmp_path / "s.pdf", n_pages=3)))
    assert "no extractable text" in _failed(doc)
    assert doc.meta == {"page_count": 3}


def test_page_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "p.pdf", ["one", "two", "three"])
    reason = _failed(load_pdf(_ref(path), IngestLimits(max_pdf_pages=2)))
    assert reason == "too many pages: 3 > limit max_pdf_pages=2"
    assert load_pdf(_ref(path), IngestLimits(max_pdf_pages=3)).status == "ok"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"%PDF-1.7\n",
        bytes(random.Random(0).randrange(256) for _ in range(4096)),
        b"%PDF-1.4\n" + bytes(random.Random(1).randrange(256) for _ in range(4096)),
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 1 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
        b"plain text pretending to be a PDF\n" * 20,
    ],
    ids=["empty", "header-only", "random", "header+random", "self-referencing", "text"],
)
def test_non_pdf_bytes_fail_without_raising(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.pdf"
    path.write_bytes(content)
    doc = load_pdf(_ref(path))
    assert doc.status == "failed" and doc.reason


def test_zip_named_pdf_is_failed(tmp_path: Path) -> None:
    path = tmp_path / "archive.pdf"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.txt", "hello " * 100)
    assert _failed(load_pdf(_ref(path))).startswith("corrupt PDF: ")


def test_truncated_prefixes_never_raise(tmp_path: Path) -> None:
    data = make_pdf(tmp_path / "full.pdf", lorem_pages(3, words_per_page=120)).read_bytes()
    cut = tmp_path / "cut.pdf"
    for frac in (0.05, 0.2, 0.5, 0.8, 0.95, 0.99):
        cut.write_bytes(data[: int(len(data) * frac)])
        doc = load_pdf(_ref(cut))  # may or may not recover; must not raise
        assert doc.status in ("ok", "failed")


def test_missing_file_is_failed(tmp_path: Path) -> None:
    assert _failed(load_pdf(_ref(tmp_path / "nope.pdf"))).startswith("cannot read file: ")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("  \n\n ", ""),
        ("a  \nb\t\n", "a\nb"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("a\n \n \n\nb", "a\n\nb"),  # whitespace-only lines count as blank once stripped
        ("a\n\nb", "a\n\nb"),
        ("x\x00y\x00", "xy"),
        ("  a  \n  b", "a\n  b"),  # indentation inside the page is kept
        ("a\r\nb", "a\nb"),
    ],
)
def test_normalize_page_text(raw: str, expected: str) -> None:
    assert _normalize_page_text(raw) == expected


def test_make_pdf_rejects_overflowing_page(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        make_pdf(tmp_path / "o.pdf", ["line\n" * 200])


def test_make_pdf_sanitizes_non_latin1(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "u.pdf", ["caf\u00e9 \u2014 \u4e2d\u6587 ok"], title="\u2603 snow")
    doc = load_pdf(_ref(path))
    assert doc.status == "ok" and "caf\u00e9" in doc.units[0].text and "ok" in doc.units[0].text
