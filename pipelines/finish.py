"""Finishing a document: its windows' rows → the merged result record → written
at its result key → the outcome the run records.

A document of one window (most of a nightly batch) is finished in the graph
(``finish_documents``: in the inference actor right after its batch; for
vllm, in a map after the processor), in parallel across the cluster, so only
its small outcome reaches the driver. A document of several windows is gathered
and finished on the driver (``pipelines/run.py``), with the same function.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from pipelines.results import RunIdentity, document_result
from pipelines.storage import OutputError, Storage, one_line
from schemas import SchemaSpec

EVIDENCE_COUNTS = ("verified", "unverified", "missing")


@dataclass
class DocOutcome:
    source: str
    doc_id: str
    status: str  # ok, partial, failed, skipped, not_reached
    reason: str | None
    result: str  # the result's location
    prompt_tokens: int = 0
    completion_tokens: int = 0
    evidence: dict[str, int] | None = None  # values verified, unverified, missing (a schema that asks evidence)


@dataclass(frozen=True)
class Writer:
    """What finishing needs; sent into the graph (the storage goes by its location: an S3
    store reopens its client in the worker)."""

    schema: SchemaSpec
    ident: RunIdentity
    out: Storage

    def finish(self, windows: list[dict[str, Any]]) -> tuple[DocOutcome, dict[str, Any]]:
        """A document's rows (one per window, or one row of window -1 when it failed before
        inference) → its result, written; the outcome and the skip index's entry
        (fingerprint, status). OutputError when the write fails."""
        rows = [dict(r, units=json.loads(r["units"])) for r in windows if r["window"] >= 0]
        doc = json.loads(windows[0]["doc"])
        result = document_result(self.ident, self.schema.json_schema, self.schema.validate, doc, rows)
        self.out.write_json(doc["result_key"], result)
        outcome = DocOutcome(
            source=doc["source"], doc_id=doc["doc_id"], status=result["status"], reason=result["reason"],
            result=self.out.uri(doc["result_key"]), prompt_tokens=sum(r["prompt_tokens"] for r in rows),
            completion_tokens=sum(r["completion_tokens"] for r in rows),
            evidence={k: result["evidence"][k] for k in EVIDENCE_COUNTS} if result["evidence"] else None,
        )  # fmt: skip
        return outcome, {"fingerprint": result["fingerprint"], "status": result["status"]}


def finish_documents(batch: pa.Table, writer: Writer) -> pa.Table:
    """Finishing in the graph: each row of a one-window document (or of one that failed
    before inference) is finished here and comes out as a small row with its ``outcome``
    (JSON: the DocOutcome and its index entry, or the write's error, which stops the run on
    the driver). Rows of longer documents pass through for the driver to gather."""
    rows = batch.to_pylist()
    for r in rows:
        r["outcome"] = None
        if r["windows"] > 1:
            continue
        try:
            outcome, entry = writer.finish([r])
            r["outcome"] = json.dumps({"outcome": asdict(outcome), "entry": entry})
        except OutputError as e:
            r["outcome"] = json.dumps({"write_error": one_line(e)})
        r.update(units="[]", doc="{}", data=None, evidence=None, raw=None)  # done: only the outcome and the counts travel on
    return pa.Table.from_pylist(rows, schema=batch.schema.append(pa.field("outcome", pa.string())))
