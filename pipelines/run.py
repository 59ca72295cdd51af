"""One extraction run: list, skip what is done, run the graph, merge and write
each document as soon as its windows are in, then the run manifest.

Exactly once from at-least-once delivery: window rows are de-duplicated by
(document, window), each result is written atomically at a key derived from
its source, and a rerun skips every document whose stored fingerprint
matches. A killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.graph import GraphSpec, run_graph
from pipelines.prompt import PROMPT_VERSION
from pipelines.records import Skipped, SourceRef
from pipelines.results import RunIdentity, document_result, result_key, source_key
from pipelines.storage import Storage


@dataclass(frozen=True)
class RunOptions:
    retry_failed: bool = False  # also redo documents whose stored result failed
    label: str | None = None  # prefix of the run id (and so of its manifest's folder), e.g. "nightly"


@dataclass
class DocOutcome:
    source: str
    doc_id: str
    status: str  # ok | partial | failed | skipped
    reason: str | None
    result: str  # the result's location
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class RunReport:
    run_id: str
    outcomes: list[DocOutcome] = field(default_factory=list)
    ignored: list[Skipped] = field(default_factory=list)
    wall_seconds: float = 0.0
    manifest: str = ""

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("ok", "partial", "failed", "skipped"), 0)
        for o in self.outcomes:
            counts[o.status] += 1
        return counts


# progress(event, info): "start" {documents, to_do}, "window" {prompt_tokens, completion_tokens}, "document" {outcome}
Progress = Callable[[str, dict[str, Any]], None]


def identity(spec: GraphSpec) -> RunIdentity:
    return RunIdentity(
        schema=spec.schema.name,
        schema_hash=spec.schema.hash,
        model=spec.engine.model_id,
        prompt_version=PROMPT_VERSION,
        max_model_len=spec.settings.max_model_len,
        max_output_tokens=spec.settings.output_tokens(spec.schema),
    )


def run_extraction(
    refs: list[SourceRef],
    spec: GraphSpec,
    out: Storage,
    options: RunOptions = RunOptions(),
    ignored: list[Skipped] | None = None,
    progress: Progress = lambda event, info: None,
) -> RunReport:
    started = time.time()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]  # sorts by start time
    report = RunReport(run_id=f"{options.label}-{run_id}" if options.label else run_id, ignored=ignored or [])
    ident = identity(spec)
    out.remove_temporaries()  # what a killed run left half-written
    with ThreadPoolExecutor(8) as pool:  # hashing releases the GIL
        keys = list(pool.map(source_key, refs))
    todo: list[dict[str, Any]] = []
    taken: set[str] = set()
    for ref, key in zip(refs, keys, strict=True):
        rkey = result_key(spec.schema.name, ref)
        if rkey in taken:  # two inputs with the same relative path: keep both results
            rkey = rkey.removesuffix(".json") + f".{ref.doc_id.rsplit('-', 1)[-1]}.json"
        taken.add(rkey)
        stored = out.read_json(rkey)
        unchanged = stored is not None and stored.get("fingerprint") == ident.fingerprint(key)
        if unchanged and not (options.retry_failed and stored.get("status") == "failed"):
            reason = f"unchanged; stored result is {stored.get('status')}"
            report.outcomes.append(DocOutcome(ref.uri, ref.doc_id, "skipped", reason, out.uri(rkey)))
            continue
        todo.append({"ref": json.dumps(asdict(ref)), "source_key": key, "result_key": rkey})
    progress("start", {"documents": len(refs), "to_do": len(todo)})
    result_keys = {SourceRef(**json.loads(t["ref"])).doc_id: t["result_key"] for t in todo}

    pending: dict[str, dict[int, dict[str, Any]]] = {}
    for row in run_graph([{"ref": t["ref"], "source_key": t["source_key"]} for t in todo], spec):
        windows = pending.setdefault(row["doc_id"], {})
        if row["window"] in windows:
            continue  # delivered twice after a retry
        windows[row["window"]] = row
        if row["window"] >= 0:
            progress("window", {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"]})
        if len(windows) == max(row["windows"], 1):
            outcome = _finish(pending.pop(row["doc_id"]), spec, ident, out, result_keys[row["doc_id"]])
            report.outcomes.append(outcome)
            progress("document", {"outcome": outcome})
    if pending:  # not expected: the graph delivers every window or raises
        raise RuntimeError(f"run ended with incomplete documents: {sorted(pending)}")

    report.wall_seconds = time.time() - started
    report.manifest = _write_manifest(report, spec, ident, out, started, options)
    return report


def _finish(windows: dict[int, dict[str, Any]], spec: GraphSpec, ident: RunIdentity, out: Storage, key: str) -> DocOutcome:
    rows = [r for w, r in windows.items() if w >= 0]
    doc = json.loads(next(iter(windows.values()))["doc"])
    for r in rows:
        r["units"] = json.loads(r["units"])
    result = document_result(ident, spec.schema.json_schema, spec.schema.validate, doc, rows)
    out.write_json(key, result)
    return DocOutcome(
        source=doc["source"], doc_id=doc["doc_id"], status=result["status"], reason=result["reason"], result=out.uri(key),
        prompt_tokens=sum(r["prompt_tokens"] for r in rows), completion_tokens=sum(r["completion_tokens"] for r in rows),
    )  # fmt: skip


def _write_manifest(
    report: RunReport, spec: GraphSpec, ident: RunIdentity, out: Storage, started: float, options: RunOptions
) -> str:
    key = f"_runs/{report.run_id}/manifest.json"
    manifest = {
        "run_id": report.run_id,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "wall_seconds": round(report.wall_seconds, 3),
        "settings": {
            **asdict(ident),
            "engine": spec.engine.name,
            "concurrency": spec.concurrency,
            "retry_failed": options.retry_failed,
            "label": options.label,
            "limits": asdict(spec.limits),
        },
        "counts": report.counts(),
        "tokens": {
            "prompt": sum(o.prompt_tokens for o in report.outcomes),
            "completion": sum(o.completion_tokens for o in report.outcomes),
        },
        "sources": [asdict(o) for o in report.outcomes],
        "ignored": [asdict(s) for s in report.ignored],
    }
    out.write_json(key, manifest)
    return out.uri(key)
