"""Ingest: one SourceRef in, one Document out. Bad input becomes a failed Document with its reason;
no exception escapes for it, and no parse runs longer or larger than the limits allow."""

from __future__ import annotations

from pipelines.ingest.limits import IngestLimits
from pipelines.ingest.pdf import load_pdf
from pipelines.ingest.repo import load_repo
from pipelines.ingest.sandbox import parse_bounded
from pipelines.ingest.text import load_text
from pipelines.records import Document, SourceRef
from pipelines.secrets import mask_document_secrets

_LOADERS = {"pdf": load_pdf, "text": load_text, "repo": load_repo, "archive": load_repo}


def load_document(ref: SourceRef, limits: IngestLimits = IngestLimits()) -> Document:
    """Parse in a child process, within parse_timeout_s and parse_memory_bytes (see sandbox.py)."""
    return mask_document_secrets(parse_bounded(parse_source, ref, limits))  # before anything reads the text


def parse_source(ref: SourceRef, limits: IngestLimits) -> Document:
    """The parse itself, unbounded; runs inside the sandbox's child process."""
    return _LOADERS[ref.kind](ref, limits)


__all__ = ["IngestLimits", "load_document"]
