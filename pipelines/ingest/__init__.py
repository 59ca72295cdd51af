"""Ingest: one SourceRef in, one Document out. Bad input becomes a failed
Document with its reason; no exception escapes for it."""

from __future__ import annotations

from pipelines.ingest.limits import IngestLimits
from pipelines.ingest.pdf import load_pdf
from pipelines.ingest.repo import load_repo
from pipelines.ingest.text import load_text
from pipelines.records import Document, SourceRef

_LOADERS = {"pdf": load_pdf, "text": load_text, "repo": load_repo, "archive": load_repo}


def load_document(ref: SourceRef, limits: IngestLimits = IngestLimits()) -> Document:
    return _LOADERS[ref.kind](ref, limits)


__all__ = ["IngestLimits", "load_document"]
