"""Plain text and Markdown: one document, one unit."""

from __future__ import annotations

from pathlib import Path

from pipelines.ingest.limits import IngestLimits
from pipelines.records import Document, SourceRef, Unit


def load_text(ref: SourceRef, limits: IngestLimits = IngestLimits()) -> Document:
    path = Path(ref.uri)
    try:
        size = path.stat().st_size
        if size > limits.max_text_bytes:
            return Document.failed(ref, "text", f"too large: {size} bytes > max_text_bytes={limits.max_text_bytes}")
        raw = path.read_bytes()
    except OSError as e:
        return Document.failed(ref, "text", f"cannot read file: {e.strerror or e}")
    if b"\x00" in raw[:8192]:
        return Document.failed(ref, "text", "binary file (NUL byte), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return Document.failed(ref, "text", f"not UTF-8 text (invalid byte at offset {e.start})")
    if not text.strip():
        return Document.failed(ref, "text", "empty document")
    return Document.from_ref(ref, "text", title=path.name, units=[Unit(ref=1, text=text)], meta={"bytes": size})
