"""One extraction run: list, skip what is done, run the graph, merge and write
each document as soon as its windows are in, then the run manifest.

Exactly once from at-least-once delivery: window rows are de-duplicated by
(document, window), each result is written atomically at a key derived from
its source, and a rerun skips every document whose stored fingerprint
matches. A killed run resumes where it stopped. One run at a time holds the
output (``pipelines/lease.py``). A run that stops early (the output store
fails, the lease is lost, Ctrl-C) still writes its manifest, with every
document it did not finish as ``not_reached``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.graph import ENGINE_DOWN, GraphSpec, run_graph
from pipelines.lease import Lease
from pipelines.prompt import PROMPT_VERSION
from pipelines.records import Skipped, SourceRef
from pipelines.results import RunIdentity, chat_format_id, document_result, limits_id, result_key, source_key
from pipelines.skip_index import file_stat, read_index, source_keys, stored_results, write_index
from pipelines.sources import source_size
from pipelines.storage import OutputError, Storage, one_line


@dataclass(frozen=True)
class RunOptions:
    retry_failed: bool = False  # also redo documents whose stored result failed
    label: str | None = None  # prefix of the run id (and so of its manifest's folder), e.g. "nightly"


STATUSES = ("ok", "partial", "failed", "skipped", "not_reached")


@dataclass
class DocOutcome:
    source: str
    doc_id: str
    status: str  # one of STATUSES
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
    stopped: str | None = None  # why the run ended before every document was done
    engine_down: str | None = None  # set when no window ran: the engine never started anywhere
    deliveries: dict[str, int] = field(default_factory=lambda: {"rows": 0, "repeated": 0})

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for o in self.outcomes:
            counts[o.status] += 1
        return counts


class RunStopped(RuntimeError):
    """The run ended early; its manifest (when the store allowed it) says which documents
    were finished and which were not reached. The message is one line."""

    def __init__(self, message: str, report: RunReport):
        super().__init__(message)
        self.report = report


# progress(event, info): "start" {documents, to_do}, "window" {prompt_tokens, completion_tokens}, "document" {outcome}
Progress = Callable[[str, dict[str, Any]], None]


def identity(spec: GraphSpec) -> RunIdentity:
    return RunIdentity(
        schema=spec.schema.name,
        schema_hash=spec.schema.hash,
        model=spec.engine.model_id,
        chat_format=chat_format_id(spec.engine.chat_format()),
        prompt_version=PROMPT_VERSION,
        max_model_len=spec.settings.max_model_len,
        max_output_tokens=spec.settings.output_tokens(spec.schema),
        limits=limits_id(spec.limits),
    )


def run_extraction(
    refs: list[SourceRef],
    spec: GraphSpec,
    out: Storage,
    lease: Lease,
    options: RunOptions = RunOptions(),
    ignored: list[Skipped] | None = None,
    progress: Progress = lambda event, info: None,
) -> RunReport:
    """``lease``: the caller's, on ``out`` (``hold_output``). RunStopped when the run ends
    early (its manifest written where the store allows)."""
    started = time.time()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]  # sorts by start time
    report = RunReport(run_id=f"{options.label}-{run_id}" if options.label else run_id, ignored=ignored or [])
    ident = identity(spec)
    todo: list[dict[str, Any]] = []
    known: dict[str, dict[str, Any]] = {}  # result key -> fingerprint, status, source: the next run's index
    try:
        out.remove_temporaries()  # what a killed run left half-written: none is a live run's, as we hold the lease
        index = read_index(out, spec.schema.name)
        todo = _to_do(refs, spec, ident, out, options, report, index, known)
        progress("start", {"documents": len(refs), "to_do": len(todo)})
        _run_graph(todo, spec, ident, out, lease, report, progress, known)
        write_index(out, spec.schema.name, index, known)
    except (OutputError, KeyboardInterrupt) as e:
        report.stopped = "interrupted" if isinstance(e, KeyboardInterrupt) else one_line(e)
        finished = {o.doc_id for o in report.outcomes}
        keys = {t["doc_id"]: t["result_key"] for t in todo}
        for ref in refs:  # every source gets a status, even when the stop came before the listing was checked
            if ref.doc_id not in finished:
                key = keys.get(ref.doc_id) or result_key(spec.schema.name, ref)
                report.outcomes.append(DocOutcome(ref.uri, ref.doc_id, "not_reached", report.stopped, out.uri(key)))
    report.wall_seconds = time.time() - started
    try:
        report.manifest = _write_manifest(report, spec, ident, out, started, options)
    except OutputError as e:
        if not report.stopped:
            raise RunStopped(one_line(e), report) from None
        raise RunStopped(f"{report.stopped}; the manifest could not be written either: {one_line(e)}", report) from None
    if report.stopped:
        raise RunStopped(report.stopped, report)
    return report


def _to_do(
    refs: list[SourceRef],
    spec: GraphSpec,
    ident: RunIdentity,
    out: Storage,
    options: RunOptions,
    report: RunReport,
    index: dict[str, dict[str, Any]],
    known: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The documents to run; the others are recorded skipped (their stored result is current,
    by the index and one listing: ``pipelines/skip_index.py``)."""
    rkeys: list[str] = []
    taken: set[str] = set()
    for ref in refs:
        rkey = result_key(spec.schema.name, ref)
        if rkey in taken:  # two inputs with the same relative path: keep both results
            rkey = rkey.removesuffix(".json") + f".{ref.doc_id.rsplit('-', 1)[-1]}.json"
        taken.add(rkey)
        rkeys.append(rkey)
    keys = source_keys(refs, rkeys, index, source_key)
    stored = stored_results(out, rkeys, index, out.versions(f"{spec.schema.name}/"))
    todo: list[dict[str, Any]] = []
    for ref, key, rkey in zip(refs, keys, rkeys, strict=True):
        found = stored[rkey]
        unchanged = key is not None and found is not None and found["fingerprint"] == ident.fingerprint(key)
        if unchanged and not (options.retry_failed and found["status"] == "failed"):
            reason = f"unchanged; stored result is {found['status']}"
            report.outcomes.append(DocOutcome(ref.uri, ref.doc_id, "skipped", reason, out.uri(rkey)))
            known[rkey] = found | _source(ref, key)
            continue
        todo.append({"ref": json.dumps(asdict(ref)), "source_key": key, "result_key": rkey, "doc_id": ref.doc_id,
                     "source": _source(ref, key), "size": source_size(ref)})  # fmt: skip
    return todo


def _source(ref: SourceRef, key: str | None) -> dict[str, Any]:
    """What the index keeps of a local file source, so that the next run need not hash it."""
    stat = file_stat(ref)
    return {"source": {"uri": ref.uri, "stat": stat, "key": key}} if stat and key else {}


def _run_graph(
    todo: list[dict[str, Any]],
    spec: GraphSpec,
    ident: RunIdentity,
    out: Storage,
    lease: Lease,
    report: RunReport,
    progress: Progress,
    known: dict[str, dict[str, Any]],
) -> None:
    """Merge and write each document as soon as its windows are in."""
    by_doc = {t["doc_id"]: t for t in todo}
    inferred, down = 0, []

    def on_window(row: dict[str, Any]) -> None:
        nonlocal inferred
        inferred += 1
        if (row["error"] or "").startswith(f"engine error: {ENGINE_DOWN}"):
            down.append(row["error"].removeprefix("engine error: "))
        progress("window", {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"]})

    rows = run_graph([{"ref": t["ref"], "source_key": t["source_key"], "size": t["size"]} for t in todo], spec)
    for doc_id, windows in documents(rows, report.deliveries, on_window):
        lease.check()
        task = by_doc[doc_id]
        outcome, result = _finish(windows, spec, ident, out, task["result_key"])
        known[task["result_key"]] = {"fingerprint": result["fingerprint"], "status": result["status"]} | task["source"]
        report.outcomes.append(outcome)
        progress("document", {"outcome": outcome})
    if inferred and len(down) == inferred:
        report.engine_down = down[0]


def documents(
    rows: Iterable[dict[str, Any]], deliveries: dict[str, int], on_window: Callable[[dict[str, Any]], None] = lambda row: None
) -> Iterator[tuple[str, dict[int, dict[str, Any]]]]:
    """(doc_id, its window rows by window) as soon as every window of a document is in. Delivery
    is at least once: a window delivered again (a batch re-run after its actor died) is dropped
    and counted in ``deliveries``: {"rows": all delivered, "repeated": dropped}."""
    pending: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        deliveries["rows"] += 1
        windows = pending.setdefault(row["doc_id"], {})
        if row["window"] in windows:
            deliveries["repeated"] += 1
            continue
        windows[row["window"]] = row
        if row["window"] >= 0:
            on_window(row)
        if len(windows) == max(row["windows"], 1):
            yield row["doc_id"], pending.pop(row["doc_id"])
    if pending:  # not expected: the graph delivers every window or raises
        raise RuntimeError(f"run ended with incomplete documents: {sorted(pending)}")


def _finish(
    windows: dict[int, dict[str, Any]], spec: GraphSpec, ident: RunIdentity, out: Storage, key: str
) -> tuple[DocOutcome, dict[str, Any]]:
    rows = [r for w, r in windows.items() if w >= 0]
    doc = json.loads(next(iter(windows.values()))["doc"])
    for r in rows:
        r["units"] = json.loads(r["units"])
    result = document_result(ident, spec.schema.json_schema, spec.schema.validate, doc, rows)
    out.write_json(key, result)
    outcome = DocOutcome(
        source=doc["source"], doc_id=doc["doc_id"], status=result["status"], reason=result["reason"], result=out.uri(key),
        prompt_tokens=sum(r["prompt_tokens"] for r in rows), completion_tokens=sum(r["completion_tokens"] for r in rows),
    )  # fmt: skip
    return outcome, result


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
        "stopped": report.stopped,
        "counts": report.counts(),
        "deliveries": report.deliveries,  # window rows from the graph, and those dropped as repeats
        "tokens": {
            "prompt": sum(o.prompt_tokens for o in report.outcomes),
            "completion": sum(o.completion_tokens for o in report.outcomes),
        },
        "sources": [asdict(o) for o in report.outcomes],
        "ignored": [asdict(s) for s in report.ignored],
    }
    out.write_json(key, manifest)
    return out.uri(key)
