"""Result records: where a document's result goes, its fingerprint, and the
record built from its windows' extractions. Pure functions, no I/O but
hashing the source."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

from pipelines.chat import ChatFormat
from pipelines.evidence import result_evidence
from pipelines.ingest.limits import IngestLimits
from pipelines.merge import merge_extractions
from pipelines.records import SourceRef

RESULT_FORMAT = 1


def result_key(schema: str, ref: SourceRef) -> str:
    """``<schema>/<source path relative to its input root>.json``."""
    return f"{schema}/{ref.rel_path}.json"


def source_key(ref: SourceRef) -> str | None:
    """What changes when the source changes: the bytes of a file; for a
    checkout, every file's path, size and modification time (but .git).
    None when the source cannot be read now: such a document is always redone."""
    if ref.version is not None:  # known from the listing (S3), no need to read anything
        return ref.version
    path = Path(ref.uri)
    h = hashlib.sha256()
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return "tree:" + h.hexdigest()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:  # unreadable now: no fingerprint, so it is redone (and fails with its reason)
        return None
    return "sha256:" + h.hexdigest()


def chat_format_id(chat: ChatFormat) -> str:
    """The tokenizer and chat template that prompts are packed with, by what they produce:
    a probe's token ids (special-token text, whitespace, CJK, code) and the tokenizer's name."""
    ids = chat.encode("probe: system", ["probe <|eot_id|> <|im_end|>\n\n\t  漢字 def f(x):\n    return x"])
    return chat.tokenizer.name + ":" + hashlib.sha256(str(ids).encode()).hexdigest()[:16]


# Bounds of the parse sandbox decide only whether a parse finishes, not what it yields:
# a document failed by one is redone with --retry-failed, the others stay current.
_RESOURCE_LIMITS = ("parse_timeout_s", "parse_memory_bytes")


def limits_id(limits: IngestLimits) -> str:
    """The ingest limits that change what a document's text is (cut pages, skipped files, ...)."""
    kept = {k: v for k, v in asdict(limits).items() if k not in _RESOURCE_LIMITS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """Everything besides the source that decides a result."""

    schema: str
    schema_hash: str
    model: str
    chat_format: str  # chat_format_id
    prompt_version: str
    max_model_len: int
    max_output_tokens: int
    limits: str  # limits_id
    reasoning_tokens: int | None = None  # a reasoning model's <think> bound; None: the model does not think

    def fingerprint(self, source: str | None) -> str | None:
        """None for a source that could not be read: it never matches, so it is redone."""
        if source is None:
            return None
        values = astuple(self)
        if self.reasoning_tokens is None:  # left out, so results of models that do not think keep their fingerprints
            values = values[:-1]
        parts = [source, *(str(v) for v in values)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def document_result(
    ident: RunIdentity,
    json_schema: dict[str, Any],
    validate,
    doc: dict[str, Any],
    windows: list[dict[str, Any]],
) -> dict[str, Any]:
    """One result per document: merged data, status, windows and errors.

    ``doc``: source, doc_id, rel_path, status, reason, skipped, masked, source_key.
    ``windows``: the infer stage's rows for this document, any order. A schema that asks
    evidence gets ``evidence`` (``pipelines/evidence.py``): each value's checked quotes, kept
    through the merge, and how many values verified.
    """
    windows = sorted(windows, key=lambda w: w["window"])
    errors: list[dict[str, Any]] = []
    if doc["status"] != "ok":
        errors.append({"stage": "ingest", "error": doc["reason"]})
    for w in windows:
        if w["error"]:
            errors.append({"stage": "extract", "window": w["window"], "error": w["error"], "raw": w["raw"]})
    good = [(w["window"], json.loads(w["data"])) for w in windows if w["data"] is not None]
    quoted = [(w["window"], w.get("evidence")) for w in windows if w["data"] is not None]
    data, conflicts = None, []
    if good:
        merged = merge_extractions(json_schema, good)
        data, conflicts = merged.data, merged.conflicts
        if merged.truncated:
            errors.append({"stage": "merge", "error": f"lists cut to the schema's maxItems: {', '.join(merged.truncated)}"})
        try:
            data = validate(json.dumps(data))
        except ValueError as e:
            errors.append({"stage": "merge", "error": f"merged data does not validate: {str(e).splitlines()[0]}"})
            good, data = [], None
    if doc["status"] != "ok" or not good:
        status = "failed"
    elif len(good) < len(windows):
        status = "partial"
    else:
        status = "ok"
    return {
        "format": RESULT_FORMAT,
        "source": doc["source"],
        "doc_id": doc["doc_id"],
        "schema": ident.schema,
        "schema_hash": ident.schema_hash,
        "model": ident.model,
        "prompt_version": ident.prompt_version,
        "status": status,
        "reason": _reason(doc, errors) if status != "ok" else None,
        "data": data,
        "conflicts": conflicts,
        "evidence": result_evidence(json_schema, data, quoted),
        "windows": [
            {k: w[k] for k in ("window", "units", "prompt_tokens", "completion_tokens", "finish_reason", "attempts")}
            | {"constrained": w.get("constrained", True), "tokens_estimated": w.get("tokens_estimated", False)}
            | {"reasoning": w.get("reasoning")}  # what a reasoning model thought before its answer; else None
            for w in windows
        ],
        "skipped_files": doc.get("skipped", []),
        "masked_files": doc.get("masked", []),  # where secrets were masked: path, kinds, count; never values
        "errors": errors,
        "fingerprint": ident.fingerprint(doc["source_key"]),
    }


def _reason(doc: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    if doc["status"] != "ok":
        return doc["reason"]
    failed = [e for e in errors if e["stage"] == "extract"]
    if failed:
        return f"{len(failed)} window(s) failed: {failed[0]['error']}"
    return errors[0]["error"] if errors else "failed"
