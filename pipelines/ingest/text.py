"""Plain text and Markdown: one document, one unit."""

from __future__ import annotations

from pipelines.ingest.fetch import SourceUnreadable, open_source
from pipelines.ingest.limits import IngestLimits
from pipelines.records import Document, SourceRef, Unit


def load_text(ref: SourceRef, limits: IngestLimits = IngestLimits()) -> Document:
    try:
        with open_source(ref, limits.max_text_bytes, "max_text_bytes") as f:
            raw = f.read()
    except SourceUnreadable as e:
        return Document.failed(ref, "text", str(e))
    if b"\x00" in raw[:8192]:
        return Document.failed(ref, "text", "binary file (NUL byte), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return Document.failed(ref, "text", f"not UTF-8 text (invalid byte at offset {e.start})")
    if not text.strip():
        return Document.failed(ref, "text", "empty document")
    if len(text) > limits.max_document_chars:
        reason = f"too much text: {len(text)} chars > max_document_chars={limits.max_document_chars}"
        return Document.failed(ref, "text", reason)
    title = ref.rel_path.rpartition("/")[2]
    return Document.from_ref(ref, "text", title=title, units=[Unit(ref=1, text=text)], meta={"bytes": len(raw)})
