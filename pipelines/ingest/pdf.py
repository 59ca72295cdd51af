"""PDF -> Document: one Unit per page, or a failed Document with a specific reason.

Never raises for bad input, except MemoryError: the sandbox (sandbox.py) turns that into the
reason naming parse_memory_bytes."""

from __future__ import annotations

import io
import logging
import re

from pypdf import PdfReader

from pipelines.ingest.fetch import SourceUnreadable, open_source
from pipelines.ingest.limits import IngestLimits
from pipelines.records import Document, Skipped, SourceRef, Unit

# pypdf logs a warning per odd font/object through `logging`; on a batch of real PDFs that
# floods stderr. Real failures reach us as exceptions, which become the document's reason.
logging.getLogger("pypdf").setLevel(logging.ERROR)

_NO_TEXT = "no extractable text (scanned or image-only PDF; OCR is not supported)"


def load_pdf(ref: SourceRef, limits: IngestLimits = IngestLimits()) -> Document:
    try:
        with open_source(ref, limits.max_source_bytes, "max_source_bytes") as f:
            data = f.read()
    except SourceUnreadable as e:
        return Document.failed(ref, "pdf", str(e))

    # pypdf raises many exception types outside PyPdfError for malformed input (TypeError,
    # KeyError, RecursionError, ...): catch them all, but keep the reason specific.
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and (reason := _decrypt_empty(reader)):
            return Document.failed(ref, "pdf", reason)
        n_pages = len(reader.pages)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - pypdf raises outside its own error tree
        # PdfReader() already sets up decryption; an unsupported handler (certificate-based,
        # custom /Filter) fails there, and calling that file "corrupt" would mislead.
        kind = "encrypted: cannot decrypt" if b"/Encrypt" in data else "corrupt PDF"
        return Document.failed(ref, "pdf", f"{kind}: {_describe(e)}")

    if n_pages > limits.max_pdf_pages:
        reason = f"too many pages: {n_pages} > limit max_pdf_pages={limits.max_pdf_pages}"
        return Document.failed(ref, "pdf", reason, page_count=n_pages)

    units: list[Unit] = []
    cut: list[Skipped] = []  # pages cut at max_page_chars: listed with the skipped files
    total = 0
    for i in range(n_pages):
        try:
            text = _normalize_page_text(reader.pages[i].extract_text())
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - as above, per page
            return Document.failed(ref, "pdf", f"page {i + 1}: text extraction failed: {_describe(e)}", page_count=n_pages)
        if len(text) > limits.max_page_chars:
            cut.append(Skipped(f"page {i + 1}", f"text cut: {len(text)} chars > max_page_chars={limits.max_page_chars}"))
            text = text[: limits.max_page_chars]
        total += len(text)
        if total > limits.max_document_chars:  # stop here: the rest would only cost time
            reason = f"too much text: more than max_document_chars={limits.max_document_chars} by page {i + 1}"
            return Document.failed(ref, "pdf", reason, page_count=n_pages)
        units.append(Unit(ref=i + 1, text=text))

    if not any(u.text for u in units):
        return Document.failed(ref, "pdf", _NO_TEXT, page_count=n_pages)
    return Document.from_ref(ref, "pdf", title=_title(reader), units=units, skipped=cut, meta={"page_count": n_pages})


def _decrypt_empty(reader: PdfReader) -> str | None:
    """Many "encrypted" PDFs only carry owner restrictions and open with the empty user password.

    Returns None once decrypted, else the failure reason.
    """
    try:
        if reader.decrypt(""):  # PasswordType.NOT_DECRYPTED == 0
            return None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a broken /Encrypt entry that PdfReader() tolerated
        return f"encrypted: cannot decrypt: {_describe(e)}"
    return "encrypted: a password is required"


def _title(reader: PdfReader) -> str | None:
    # Metadata is optional decoration: a broken /Info must not fail an otherwise readable PDF.
    try:
        title = reader.metadata.title if reader.metadata else None
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a broken /Info only costs the title
        return None
    title = str(title).replace("\x00", "").strip() if title else ""
    return title or None


def _normalize_page_text(text: str) -> str:
    """Strip line ends, collapse 3+ newlines to a blank line, trim, drop NULs."""
    text = "\n".join(line.rstrip() for line in text.replace("\x00", "").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _describe(e: BaseException) -> str:
    """Exception class plus the first line of its message, short enough for a reason field."""
    lines = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return msg[:200]
