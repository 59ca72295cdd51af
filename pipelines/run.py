"""One extraction run: list, skip what is done, run the graph (which finishes
one-window documents itself), merge and write each longer document as soon as
its windows are in, then the run manifest: a summary and one line per source.

Exactly once from at-least-once delivery: window rows and outcomes are
de-duplicated by (document, window), each result is written atomically at a
key derived from its source (a re-run batch rewrites the same object), and a
rerun skips every document whose stored fingerprint matches. A killed run
resumes where it stopped. One run at a time holds the output
(``pipelines/lease.py``). A run that stops early (the output store fails, the
lease is lost, Ctrl-C) still writes its manifest, with every document whose
outcome it did not gather as ``not_reached`` (one the graph wrote just then
is found and skipped by the next run).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.cost import RunTally, engine_preset
from pipelines.finish import EVIDENCE_COUNTS, DocOutcome, Writer
from pipelines.graph import ENGINE_DOWN, GraphSpec, run_graph
from pipelines.lease import Lease
from pipelines.prompt import PROMPT_VERSION
from pipelines.records import Skipped, SourceRef
from pipelines.results import RunIdentity, chat_format_id, limits_id, result_key, source_key
from pipelines.skip_index import file_stat, read_index, source_keys, stored_results, write_index
from pipelines.sources import source_size
from pipelines.storage import OutputError, Storage, one_line
from pipelines.table import TableUpdate, update_table


@dataclass(frozen=True)
class RunOptions:
    retry_failed: bool = False  # also redo documents whose stored result failed
    label: str | None = None  # prefix of the run id (and so of its manifest's folder), e.g. "nightly"


STATUSES = ("ok", "partial", "failed", "skipped", "not_reached")


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
    tally: RunTally = field(default_factory=RunTally)  # the inferred windows' output budget, GPU time estimated and held
    table: TableUpdate | None = None  # the schema's Parquet table, brought up to the results

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for o in self.outcomes:
            counts[o.status] += 1
        return counts

    def evidence(self) -> dict[str, int] | None:
        """The values of this run's results by their evidence; None when none was asked."""
        done = [o.evidence for o in self.outcomes if o.evidence is not None]
        return {k: sum(e[k] for e in done) for k in EVIDENCE_COUNTS} if done else None


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
        reasoning_tokens=spec.settings.reasoning_tokens,
    )


def run_extraction(
    refs: list[SourceRef],
    spec: GraphSpec,
    out: Storage,
    lease: Lease,
    options: RunOptions = RunOptions(),
    ignored: list[Skipped] | None = None,
    progress: Progress = lambda event, info: None,
    start: Callable[[], None] = lambda: None,
) -> RunReport:
    """``lease``: the caller's, on ``out`` (``hold_output``). ``start``: brings up what the graph
    runs on (Ray), called only when there are documents to do. RunStopped when the run ends
    early (its manifest written where the store allows)."""
    started = time.time()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]  # sorts by start time
    report = RunReport(run_id=f"{options.label}-{run_id}" if options.label else run_id, ignored=ignored or [],
                       tally=RunTally(engine_preset(spec.engine)))  # fmt: skip
    ident = identity(spec)
    todo: list[dict[str, Any]] = []
    known: dict[str, dict[str, Any]] = {}  # result key -> fingerprint, status, source: the next run's index
    try:
        out.remove_temporaries()  # what a killed run left half-written: none is a live run's, as we hold the lease
        index = read_index(out, spec.schema.name)
        listed = out.versions(f"{spec.schema.name}/")  # the results' versions: one listing
        todo = _to_do(refs, spec, ident, out, options, report, index, listed, known)
        progress("start", {"documents": len(refs), "to_do": len(todo)})
        if todo:
            start()
            graph_started = time.time()
            _run_graph(todo, spec, ident, out, lease, report, progress, known)
            if report.tally.preset:
                gpus = spec.engine.replicas_for(spec.concurrency) * spec.engine.gpus_per_replica
                report.tally.held_gpu_s = gpus * (time.time() - graph_started)
        listed = write_index(out, spec.schema.name, index, known, None if todo else listed)
        report.table = update_table(out, spec.schema, listed)
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
    listed: dict[str, str],
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
    stored = stored_results(out, rkeys, index, listed)
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
    """Gather each document's outcome as soon as it is written: in the graph for one-window
    documents, here for longer ones, whose windows are merged and written as soon as all are in."""
    by_doc = {t["doc_id"]: t for t in todo}
    writer = Writer(spec.schema, ident, out)
    inferred, down = 0, []

    def on_window(row: dict[str, Any]) -> None:
        nonlocal inferred
        inferred += 1
        if (row["error"] or "").startswith(f"engine error: {ENGINE_DOWN}"):
            down.append(row["error"].removeprefix("engine error: "))
        report.tally.add(row["prompt_tokens"], row["max_tokens"], row["completion_tokens"])
        progress("window", {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"]})

    items = [{k: t[k] for k in ("ref", "source_key", "result_key", "size")} for t in todo]
    for doc_id, rows in documents(run_graph(items, spec, writer), report.deliveries, on_window):
        lease.check()
        if rows[0].get("outcome"):  # finished in the graph
            done = json.loads(rows[0]["outcome"])
            if "write_error" in done:
                raise OutputError(done["write_error"])
            outcome, entry = DocOutcome(**done["outcome"]), done["entry"]
        else:
            outcome, entry = writer.finish(rows)
        task = by_doc[doc_id]
        known[task["result_key"]] = entry | task["source"]
        report.outcomes.append(outcome)
        progress("document", {"outcome": outcome})
    if inferred and len(down) == inferred:
        report.engine_down = down[0]


def documents(
    rows: Iterable[dict[str, Any]], deliveries: dict[str, int], on_window: Callable[[dict[str, Any]], None] = lambda row: None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(doc_id, its window rows) as soon as every window of a document is in (a document
    finished in the graph: its one row). Delivery is at least once: a window delivered again
    (a batch re-run after its actor died) is dropped and counted in ``deliveries``:
    {"rows": all delivered, "repeated": dropped}."""
    pending: dict[str, dict[int, dict[str, Any]]] = {}
    finished: set[str] = set()
    for row in rows:
        deliveries["rows"] += 1
        if row["doc_id"] in finished or row["window"] in pending.get(row["doc_id"], {}):
            deliveries["repeated"] += 1
            continue
        windows = pending.setdefault(row["doc_id"], {})
        windows[row["window"]] = row
        if row["window"] >= 0:
            on_window(row)
        if len(windows) == max(row["windows"], 1):
            finished.add(row["doc_id"])
            yield row["doc_id"], list(pending.pop(row["doc_id"]).values())
    if pending:  # not expected: the graph delivers every window or raises
        raise RuntimeError(f"run ended with incomplete documents: {sorted(pending)}")


def _write_manifest(
    report: RunReport, spec: GraphSpec, ident: RunIdentity, out: Storage, started: float, options: RunOptions
) -> str:
    """The per-source list as JSON Lines (``sources.jsonl``: one DocOutcome per line), then the
    summary beside it (``manifest.json``): counts, settings, tokens, where the list is."""
    folder = f"_runs/{report.run_id}"
    out.write_lines(f"{folder}/sources.jsonl", (asdict(o) for o in report.outcomes))
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
            "output_budget": report.tally.output_budget,  # what the windows inferred were allowed
        },
        "evidence": report.evidence(),  # values of this run's results: quote verified, not found, none given
        "gpu_time": report.tally.gpu_time(),  # plan's estimate for the windows run, and measured
        "sources_file": out.uri(f"{folder}/sources.jsonl"),
        "table": asdict(report.table) if report.table else None,
        "ignored": [asdict(s) for s in report.ignored],
    }
    out.write_json(f"{folder}/manifest.json", manifest)
    return out.uri(f"{folder}/manifest.json")
