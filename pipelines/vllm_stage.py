"""The infer stage of the vllm engine: window rows through Ray Data LLM's vLLM
processor (``ray.data.llm.build_processor``) and back, in the graph. The
engine's settings are ``pipelines/engines/vllm.py``.

Rows in. The packer's token ids go in as ``tokenized_prompt``, with the
processor's chat-template, tokenize and detokenize stages off: what the GPU
sees is exactly what was counted, and document text never becomes a control
token (DESIGN 5). Rows lose their packed ids before the processor and vLLM's
returned prompt ids after it (a 128K prompt is about a megabyte per row); for
a schema that asks evidence they carry the window's text (``texts``), which
the quotes are checked against as each output is recorded, and which the
graph's output rows no longer hold. Each row's ``sampling_params``: ``max_tokens``
(vLLM's default is 16), ``temperature`` 0, the chat format's end-of-turn ids as
``stop_token_ids``, and the JSON schema, as text, under ``structured_outputs``
(``{"json": ..., "disable_any_whitespace": true}``: the keys of vLLM's
``StructuredOutputsParams``, which Ray 2.60's vLLM stage builds from that
entry). The engine decodes with xgrammar and no free whitespace
(``structured_outputs_config``; vLLM's xgrammar backend reads that setting
from the engine, not from the request).

Results out. Each output is validated against the schema (infer.py's
``record_completion``). Ray 2.60 does not pass vLLM's finish reason on, so it
is vLLM's own rule over the generated ids and the stop ids the request was sent
with (a row carries them): a stop token ends a request before the length cap
does. ``length`` is a failure recorded with its raw text.
Retry: infer.py retries a failed window once with twice the output budget.
Greedy decoding makes that retry repeat the first attempt's tokens, so this
engine sends every window with the retry's budget from the start (the window
was packed for the smaller one, so it fits) and makes no second pass: the
same result without a second 128K prefill. An output still cut at that
budget, or invalid JSON (which a retry would only repeat), is recorded with
``attempts`` 1, not retried. Row errors are kept (``should_continue_on_error``)
and become failed windows, never lost; a dead engine restarts its actor.

What the engine saw. vLLM returns the prompt ids it ran; a window whose ids
differ from the packed ones (compared by digest) is failed, never recorded as
a result of the prompt we counted, and a window's ``prompt_tokens`` is vLLM's
own count.

Ray Data LLM and vLLM are imported only when the graph runs (the ``vllm``
extra); this module imports without them.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Sequence
from functools import partial
from typing import Any

from pipelines.engines.base import Completion, EngineError, split_thinking
from pipelines.engines.vllm import INSTALL_HINT, VLLMConfig
from pipelines.infer import larger_budget, out_table, record_completion

# Ray Data LLM's column for a row's error. Rows that carry one skip the engine
# stage and the postprocess: failed documents take that way through, untouched.
ERROR_COLUMN = "__inference_error__"
KEY_COLUMN = "window_key"  # our request id: vLLM's stage writes its own int "request_id"
STOP_COLUMN = "stop_ids"  # the request's stop token ids (the stage pops sampling_params), for its finish reason
NOT_SENT = "not sent: the document failed before inference"
_CARRIED = ("doc_id", "window", "windows", "units", "texts", "prompt_tokens", "max_tokens", "doc")


def infer(ds, spec):
    """The graph's infer stage for the vllm engine: window rows in, the graph's output rows out."""
    stop_ids, thinking = spec.engine.chat_format().stop_ids, spec.engine.reasoning_budget
    processor = build(spec.engine, spec.schema, spec.concurrency, thinks=thinking is not None)
    return through(ds, processor, spec.schema, spec.engine.max_model_len, stop_ids, thinking)


def build(config: VLLMConfig, schema, concurrency: int, thinks: bool = False):
    """Ray Data LLM's vLLM processor for a graph (built on the driver: needs the extra, not a GPU).
    ``thinks``: the model's output is thinking, then the answer."""
    replicas = config.replicas_for(concurrency)
    try:
        from ray.data.llm import build_processor

        return build_processor(config.processor_config(replicas), postprocess=partial(result_row, schema=schema, thinks=thinks))
    except ImportError as e:  # transformers or vLLM
        raise EngineError(f"{INSTALL_HINT} ({e})") from None


def through(ds, processor, schema, max_model_len: int, stop_ids: Sequence[int], thinking: int | None = None):
    """Window rows → the processor → the graph's output rows. The processor's
    postprocess (``result_row``) sees successful rows only; rows with an error
    come out as they were, and the last map turns them into window rows."""
    schema_json = json.dumps(schema.decode_schema, separators=(",", ":"))  # property order is the output's order
    ds = ds.map(to_vllm_row, fn_kwargs={"schema_json": schema_json, "max_model_len": max_model_len,
                                        "stop_ids": list(stop_ids), "thinking": thinking})  # fmt: skip
    ds = processor(ds)
    return ds.map_batches(partial(finish_batch, schema=schema), batch_format="pyarrow", batch_size=None)


def to_vllm_row(
    row: dict[str, Any], schema_json: str, max_model_len: int, stop_ids: list[int], thinking: int | None = None
) -> dict[str, Any]:
    """A packed window row as the processor's input. Every row carries the error
    column: a row without it would read as an error row (None != ""). A failed
    document's row has the same column types as a window's (an empty prompt,
    whole sampling params): Ray Data aligns the struct fields of the blocks it
    batches for the engine, and fails on a field typed null in one of them."""
    out = {k: row[k] for k in _CARRIED} | {KEY_COLUMN: row["request_id"], STOP_COLUMN: stop_ids}
    if row["window"] < 0:
        params = sampling_params(schema_json, 1, stop_ids, thinking)
        return out | {"tokenized_prompt": [], "sampling_params": params, "output_budget": 0,
                      "prompt_digest": "", ERROR_COLUMN: NOT_SENT}  # fmt: skip
    ids = array("i", row["prompt"])
    budget = larger_budget(max_model_len, len(ids), row["max_tokens"])  # the retry's budget, up front
    return out | {
        "tokenized_prompt": ids.tolist(),
        "sampling_params": sampling_params(schema_json, budget, stop_ids, thinking),
        "output_budget": budget,
        "prompt_digest": ids_digest(ids),
        ERROR_COLUMN: "",
    }


def ids_digest(ids: Sequence[int]) -> str:
    return hashlib.blake2b(array("i", ids).tobytes(), digest_size=16).hexdigest()


def sampling_params(schema_json: str, max_tokens: int, stop_ids: list[int], thinking: int | None = None) -> dict[str, Any]:
    """vLLM SamplingParams fields. The schema goes as text: as a nested value,
    Arrow would make a struct type of the schema itself. ``thinking``: a reasoning model's
    bound on its thinking, after which vLLM writes the end of it; the schema applies from
    there (the engine's reasoning parser)."""
    return {
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stop_token_ids": stop_ids,
        "structured_outputs": {"json": schema_json, "disable_any_whitespace": True},
        **({"thinking_token_budget": thinking} if thinking is not None else {}),
    }


def finish_reason(generated: Sequence[int], max_tokens: int, stop_ids: Sequence[int]) -> str:
    """vLLM's own rule (its scheduler's check_stop): a stop token ends a request before the cap does."""
    if len(generated) and int(generated[-1]) in stop_ids:
        return "stop"
    return "length" if len(generated) >= max_tokens else "stop"


def result_row(row: dict[str, Any], schema, thinks: bool = False) -> dict[str, Any]:
    """One processor output row → one window row (keyed by KEY_COLUMN), without
    vLLM's columns: the returned prompt ids, generated ids, metrics. ``thinks``: the
    text is a reasoning model's, its thinking kept apart from the answer."""
    out = {k: row[k] for k in (KEY_COLUMN, *_CARRIED)}
    if row["window"] < 0:
        return out  # a failed document, as infer_windows passes it through
    key, budget = row[KEY_COLUMN], row["output_budget"]
    if error := row.get(ERROR_COLUMN):
        c = Completion(key, "", "error", row["prompt_tokens"], 0, error=" ".join(error.split())[:500])
    elif ids_digest(seen := row["prompt_token_ids"]) != row["prompt_digest"]:
        wrong = f"vLLM ran {len(seen)} prompt ids that differ from the {row['prompt_tokens']} packed"
        c = Completion(key, "", "error", len(seen), 0, error=wrong)
    else:
        generated = row["generated_tokens"]
        reasoning, text = split_thinking(row["generated_text"]) if thinks else (None, row["generated_text"])
        reason = finish_reason(generated, budget, row[STOP_COLUMN])
        c = Completion(key, text, reason, row["num_input_tokens"], len(generated), reasoning=reasoning)
    out["prompt_tokens"] = c.prompt_tokens  # vLLM's count of what it ran
    record_completion(out, c, schema, attempt=1)
    if c.finish_reason == "length":
        out["error"] += (
            f" (sent with the retry's budget up front, {budget} tokens for a window packed for {row['max_tokens']}; not retried)"
            if budget > row["max_tokens"]
            else " (no room in max_model_len for a larger output budget)"
        )
    return out


def finish_batch(batch, schema):
    """The processor's output as the graph's output rows (a pyarrow table)."""
    rows = [result_row(r, schema) if r.get(ERROR_COLUMN) else r for r in batch.to_pylist()]
    for r in rows:
        r["request_id"] = r.pop(KEY_COLUMN)
    return out_table(rows)
