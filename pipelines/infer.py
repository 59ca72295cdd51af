"""The infer stage: windows in, validated extractions out. Failure policy in
one place: a truncated or invalid completion is retried once with a larger
output budget, then recorded with its raw text; never dropped."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from pipelines.engines.base import Completion, Engine, Request
from pipelines.evidence import check_quotes, spans_from_row
from schemas import SchemaSpec

RETRY_BUDGET_FACTOR = 2


def infer_windows(engine: Engine, schema: SchemaSpec, max_model_len: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each window row gains: data (validated JSON text or None), evidence (its quotes,
    checked against the window's text), error, raw, finish_reason, completion_tokens,
    attempts. Rows of documents that failed before inference (window == -1) pass through
    unchanged."""
    out = [dict(r) for r in rows]
    todo = [r for r in out if r["window"] >= 0]
    requests = {
        r["request_id"]: Request(r["request_id"], list(r["prompt_ids"]), schema.decode_schema, r["max_tokens"]) for r in todo
    }
    first = dict(zip(requests, engine.generate(list(requests.values())), strict=True))  # one per request
    retry = {}
    for r in todo:
        record_completion(r, first[r["request_id"]], schema, attempt=1)
        if r["error"] and first[r["request_id"]].finish_reason != "error":
            bigger = larger_budget(max_model_len, len(r["prompt_ids"]), r["max_tokens"])
            if bigger > r["max_tokens"]:  # greedy decoding: the same budget gives the same text
                retry[r["request_id"]] = Request(r["request_id"], list(r["prompt_ids"]), schema.decode_schema, bigger)
            else:
                r["error"] += f" (no room in max_model_len={max_model_len} for a larger output budget)"
    if retry:
        second = dict(zip(retry, engine.generate(list(retry.values())), strict=True))
        for r in todo:
            if r["request_id"] in second:
                record_completion(r, second[r["request_id"]], schema, attempt=2)
    return out


def engine_failed(rows: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
    """Window rows failed by the engine as a whole, each with its one-line reason; rows of
    documents that failed before inference pass through unchanged."""
    out = [dict(r) for r in rows]
    for r in out:
        if r["window"] >= 0:
            c = Completion(r["request_id"], "", "error", len(r["prompt_ids"]), 0, error=" ".join(reason.split())[:500])
            record_completion(r, c, None, attempt=1)
    return out


def larger_budget(max_model_len: int, prompt_tokens: int, max_tokens: int) -> int:
    """The output budget of a retry: RETRY_BUDGET_FACTOR times larger, within what the context leaves."""
    return min(max_model_len - prompt_tokens, max_tokens * RETRY_BUDGET_FACTOR)


def record_completion(row: dict[str, Any], c: Completion, schema: SchemaSpec | None, attempt: int) -> None:
    """Sets the row's data (validated JSON text) and its evidence (JSON: the quotes, each
    looked up in the row's ``texts``), or error, with the raw text of a failure (``schema``
    None: an error completion, nothing to validate); and a reasoning model's thinking."""
    row["attempts"] = attempt
    row["finish_reason"] = c.finish_reason
    row["completion_tokens"] = c.completion_tokens
    row["constrained"], row["tokens_estimated"] = c.constrained, c.tokens_estimated
    row["reasoning"] = c.reasoning
    row["data"], row["evidence"], row["error"], row["raw"] = None, None, None, None
    if c.finish_reason == "error":
        row["error"] = f"engine error: {c.error}"
    elif c.finish_reason == "length":
        row["error"] = f"output hit max_tokens ({c.completion_tokens} tokens) before the JSON closed"
    else:
        try:
            data, quotes = schema.parse(c.text)
            row["data"] = json.dumps(data, ensure_ascii=False)
            if quotes:
                row["evidence"] = json.dumps(check_quotes(quotes, spans_from_row(row.get("texts"))), ensure_ascii=False)
        except ValueError as e:
            row["error"] = f"invalid JSON for schema '{schema.name}': {str(e).splitlines()[0][:300]}"
    if row["error"]:
        row["raw"] = c.text


def out_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Inferred window rows as the graph's output: rows of failed documents get the
    empty inference columns; other columns (token ids, the window's text, engine extras)
    are dropped."""
    for r in rows:
        for key in ("data", "evidence", "error", "raw", "finish_reason", "reasoning"):
            r.setdefault(key, None)
        r.setdefault("completion_tokens", 0)
        r.setdefault("attempts", 0)
        r.setdefault("constrained", True)
        r.setdefault("tokens_estimated", False)
    return pa.Table.from_pylist(rows, schema=OUT_SCHEMA)  # takes the schema's columns only


OUT_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("doc_id", pa.string()), ("window", pa.int64()), ("windows", pa.int64()),
    ("units", pa.string()), ("prompt_tokens", pa.int64()), ("max_tokens", pa.int64()), ("doc", pa.string()),
    ("data", pa.string()), ("evidence", pa.string()), ("error", pa.string()), ("raw", pa.string()),
    ("finish_reason", pa.string()), ("reasoning", pa.string()),
    ("completion_tokens", pa.int64()), ("attempts", pa.int64()), ("constrained", pa.bool_()), ("tokens_estimated", pa.bool_()),
])  # fmt: skip
