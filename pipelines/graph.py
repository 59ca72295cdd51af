"""The Ray Data graph: refs → parse + pack (tasks, in parallel) → infer (an
actor pool, one engine per actor, loaded once), each batch then finished in
the same actor (a one-window document's result merged and written,
``pipelines/finish.py``) → outcomes and the windows of longer documents
streamed to the driver, which gathers those, merges and writes them
(``pipelines/run.py``).

The vllm engine infers in a Ray Data stage of its own instead of the actor
pool (``pipelines/vllm_stage.py``: Ray Data LLM's processor); it returns rows
with the columns of ``OUT_SCHEMA``, as the actor pool does, and a map after it
finishes documents.

Gathering a long document's windows on the driver instead of a groupby avoids
Ray's hash shuffle, which costs 4-18 s on a small machine (DESIGN, measured);
the driver holds only the small completions of documents still in flight.
Rows carry token ids as packed int32 bytes and, for a schema that asks for
evidence, the window's document text (``texts``), which the infer stage checks
the quotes against and then drops.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import ray

from pipelines import vllm_stage
from pipelines.engines.base import EngineConfig, EngineError
from pipelines.finish import Writer, finish_documents
from pipelines.infer import engine_failed, infer_windows, out_table
from pipelines.ingest import IngestLimits
from pipelines.packer import PackSettings
from pipelines.plan import load_and_pack
from pipelines.records import SourceRef
from schemas import SchemaSpec


@dataclass(frozen=True)
class GraphSpec:
    schema: SchemaSpec
    engine: EngineConfig
    settings: PackSettings
    limits: IngestLimits
    concurrency: int = 1  # inference actors
    engine_restarts: int = 2  # a batch whose engine failed is tried again on a fresh one this many times


def parse_and_pack(item: dict[str, Any], spec: GraphSpec) -> list[dict[str, Any]]:
    """One source → its window rows, or one row (window -1) saying why it failed."""
    ref = SourceRef(**json.loads(item["ref"]))
    plan = load_and_pack(ref, spec.schema, spec.engine.chat_format(), spec.settings, spec.limits)
    doc = plan.doc
    info = {
        "source": doc.source, "doc_id": doc.doc_id, "rel_path": doc.rel_path, "status": doc.status,
        "reason": doc.reason, "skipped": [asdict(s) for s in doc.skipped], "source_key": item["source_key"],
        "masked": doc.meta.get("masked", []), "result_key": item.get("result_key"),
    }  # fmt: skip
    if plan.packed is None:
        return [_row(doc.doc_id, info, -1, 0, [], [], [], 0)]  # a failed document still reaches the driver
    cited = spec.schema.asks_evidence  # its quotes are looked up in the window's text
    return [
        _row(doc.doc_id, info, w.index, w.count, w.units, w.spans if cited else [], w.prompt_ids, w.max_output_tokens)
        for w in plan.packed.windows
    ]


def _row(
    doc_id: str, info: dict, window: int, windows: int, units: list, spans: list, ids: list[int], max_tokens: int
) -> dict[str, Any]:
    return {
        "request_id": f"{doc_id}:{window}",
        "doc_id": doc_id,
        "window": window,
        "windows": windows,
        "units": json.dumps(units),
        "texts": json.dumps([s.to_row() for s in spans], ensure_ascii=False),
        "prompt": array("i", ids).tobytes(),
        "prompt_tokens": len(ids),
        "max_tokens": max_tokens,
        "doc": json.dumps(info),
    }


ENGINE_DOWN = "the engine did not start: "  # the reason of windows whose engine never started


class InferActor:
    """Holds one engine, loaded once; Ray Data feeds it batches of window rows. With a
    ``writer``, each batch's one-window documents are then finished here (``finish_documents``):
    in a stage of its own, each batch would cost a Ray task (+25% of wall time at 1,000 notes).

    An engine that cannot start, or that fails a whole batch (EngineError: a
    crashed llama.cpp, a server gone past its client's retries), is replaced by
    a fresh one and the batch tried again, ``engine_restarts`` times; then those
    windows fail with its one-line reason. Raising instead would end the run:
    Ray Data neither restarts an actor whose code raises nor finishes a dataset
    with a failed block. (An actor process that dies is Ray's to restart: it
    resends the batch, and the driver drops windows delivered twice.)"""

    def __init__(self, spec: GraphSpec, writer: Writer | None = None):
        self.spec, self.writer = spec, writer
        self.engine, self.reason, self.builds = None, None, 0
        self._start()

    def _start(self) -> None:
        self.builds += 1
        try:
            self.engine = self.spec.engine.build()
        except EngineError as e:
            self.engine, self.reason = None, f"{ENGINE_DOWN}{e}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = self._infer(batch)
        return out if self.writer is None else finish_documents(out, self.writer)

    def _infer(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for r in rows:
            r["prompt_ids"] = array("i", r.pop("prompt")).tolist()
        restarts = 0
        while True:
            if self.engine is not None:
                try:
                    return out_table(infer_windows(self.engine, self.spec.schema, self.spec.settings.max_model_len, rows))
                except EngineError as e:
                    self.engine, self.reason = None, str(e)
            if restarts == self.spec.engine_restarts:
                return out_table(engine_failed(rows, self.reason))
            restarts += 1
            self._start()


def run_graph(items: list[dict[str, Any]], spec: GraphSpec, writer: Writer | None = None) -> Iterator[dict[str, Any]]:
    """Stream inferred window rows (any order, possibly repeated after a retry). With a
    ``writer``, one-window documents are finished in the graph and come as rows with their
    ``outcome`` (``finish_documents``). ``items``: {"ref": SourceRef as JSON, "source_key": str,
    "result_key": str, "size": bytes, -1 or absent when unknown}. Needs ray.init() done."""
    if not items:
        return iter(())
    # One parse task per block: a task costs tens of milliseconds of Ray's time, more than a small note's parse.
    ds = ray.data.from_arrow([pa.Table.from_pylist(block) for block in blocks(items)])
    ds = ds.flat_map(parse_and_pack, fn_kwargs={"spec": spec}, num_cpus=1)
    if spec.engine.name == "vllm":
        ds = vllm_stage.infer(ds, spec)
        if writer is not None:
            ds = ds.map_batches(finish_documents, fn_kwargs={"writer": writer}, batch_size=None, batch_format="pyarrow")
    else:  # in the inference actors, right after each batch: a stage of its own costs a Ray task per batch
        ds = _actor_pool(ds, spec, writer)
    # iter_rows() holds each row back until the next one is ready (one window
    # late: a killed run would lose a finished window); whole batches do not.
    return (
        row for batch in ds.iter_batches(batch_size=None, prefetch_batches=0, batch_format="pyarrow") for row in batch.to_pylist()
    )


SMALL_SOURCE_BYTES = 256 * 1024  # sources up to this size share a parse task; larger ones (and trees) have their own
BLOCK_SOURCES = 32  # at most this many sources per task: a block's windows reach inference when all are packed


def blocks(items: list[dict[str, Any]], per_block: int = BLOCK_SOURCES) -> list[list[dict[str, Any]]]:
    """Items (``{"ref", "source_key"}``) in parse blocks, in order: small sources (``size`` known and
    at most SMALL_SOURCE_BYTES) together, every other one alone. Never fewer blocks than it takes
    to give each of the cluster's CPUs a few, so no core waits while another parses a long block."""
    is_small = [0 <= i.get("size", -1) <= SMALL_SOURCE_BYTES for i in items]
    small = [i for i, s in zip(items, is_small, strict=True) if s]
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    per_block = max(1, min(per_block, len(small) // (4 * cpus)))
    out = [[_parse_item(i)] for i, s in zip(items, is_small, strict=True) if not s]
    out += [[_parse_item(i) for i in small[k : k + per_block]] for k in range(0, len(small), per_block)]
    return out


def _parse_item(item: dict[str, Any]) -> dict[str, Any]:
    return {"ref": item["ref"], "source_key": item["source_key"], "result_key": item.get("result_key")}


def _actor_pool(ds: ray.data.Dataset, spec: GraphSpec, writer: Writer | None) -> ray.data.Dataset:
    return ds.map_batches(
        InferActor,
        fn_constructor_kwargs={"spec": spec, "writer": writer},
        compute=ray.data.ActorPoolStrategy(size=spec.concurrency),
        # As many windows as the engine runs at once (llama.cpp: one; a server: its concurrency),
        # so results stream as they finish.
        batch_size=spec.engine.batch_size,
        batch_format="pyarrow",
        num_cpus=1,
    )
