"""Plain records that flow between the stages. No I/O here.

Rows in the Ray Data graph are the ``to_row()`` dicts of these records, so
every field is a plain JSON-able value.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

SourceKind = Literal["pdf", "text", "repo", "archive"]
DocKind = Literal["pdf", "text", "repo"]
DocStatus = Literal["ok", "failed"]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One input that becomes exactly one document."""

    uri: str  # absolute local path, s3://bucket/key, or s3://bucket/prefix/ (a repository tree)
    root: str  # the input root it was found under
    rel_path: str  # posix path relative to root; the output key mirrors it
    kind: SourceKind
    version: str | None = None  # change key known from the listing (S3: ETag and size); None: hash the bytes
    endpoint: str | None = None  # S3-compatible endpoint URL; None: AWS's default (or AWS_ENDPOINT_URL)

    @property
    def doc_id(self) -> str:
        """Readable, filesystem-safe and unique per source."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.rel_path).strip("._-")[:80] or "doc"
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:8]
        return f"{slug}-{digest}"


@dataclass(slots=True)
class Unit:
    """A natural piece of a document: a page (ref = 1-based page number) or a file (ref = path)."""

    ref: int | str
    text: str


@dataclass(slots=True)
class Skipped:
    """A file of a repository that was left out, and why."""

    path: str
    reason: str


@dataclass(slots=True)
class Document:
    doc_id: str
    source: str
    rel_path: str
    kind: DocKind
    title: str | None = None
    units: list[Unit] = field(default_factory=list)
    status: DocStatus = "ok"
    reason: str | None = None
    skipped: list[Skipped] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @classmethod
    def failed(cls, ref: SourceRef, kind: DocKind, reason: str, **meta) -> Document:
        return cls(
            doc_id=ref.doc_id,
            source=ref.uri,
            rel_path=ref.rel_path,
            kind=kind,
            status="failed",
            reason=reason,
            meta=meta,
        )

    @classmethod
    def from_ref(cls, ref: SourceRef, kind: DocKind, **kw) -> Document:
        return cls(doc_id=ref.doc_id, source=ref.uri, rel_path=ref.rel_path, kind=kind, **kw)

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> Document:
        row = dict(row)
        row["units"] = [Unit(**u) for u in row.get("units", [])]
        row["skipped"] = [Skipped(**s) for s in row.get("skipped", [])]
        return cls(**row)
