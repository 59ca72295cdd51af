"""Ingest and pack every source, without a model: what ``longctx plan`` shows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

from pipelines.chat import ChatFormat
from pipelines.ingest import IngestLimits, load_document
from pipelines.packer import Packed, PackError, PackSettings, Window, pack_document
from pipelines.records import Document, SourceRef
from schemas import SchemaSpec


@dataclass(slots=True)
class DocPlan:
    doc: Document
    packed: Packed | None  # None when the document failed; doc.reason says why


def plan_documents(
    refs: list[SourceRef],
    schema: SchemaSpec,
    chat: ChatFormat,
    settings: PackSettings = PackSettings(),
    limits: IngestLimits = IngestLimits(),
) -> Iterator[DocPlan]:
    for ref in refs:
        yield load_and_pack(ref, schema, chat, settings, limits)


def load_and_pack(ref: SourceRef, schema: SchemaSpec, chat: ChatFormat, settings: PackSettings, limits: IngestLimits) -> DocPlan:
    """Parse and pack one source; a document that cannot be read or packed comes back failed, with why."""
    doc = load_document(ref, limits)
    if doc.status != "ok":
        return DocPlan(doc, None)
    try:
        return DocPlan(doc, pack_document(doc, schema, chat, settings))
    except PackError as e:
        doc.status, doc.reason = "failed", str(e)
        return DocPlan(doc, None)


def window_record(doc: Document, w: Window) -> dict:
    rec = {
        "source": doc.source,
        "doc_id": doc.doc_id,
        "status": "ok",
        "window": w.index,
        "windows": w.count,
        "units": w.units,
        "prompt_tokens": w.prompt_tokens,
        "document_tokens": w.document_tokens,
        "budget": w.budget,
        "max_model_len": w.max_model_len,
        "max_output_tokens": w.max_output_tokens,
    }
    if w.index == 0 and doc.skipped:
        rec["skipped"] = [asdict(s) for s in doc.skipped]
    return rec


def failed_record(doc: Document) -> dict:
    return {"source": doc.source, "doc_id": doc.doc_id, "status": doc.status, "reason": doc.reason}
