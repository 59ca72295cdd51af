"""The vllm engine: Llama 3.1 on GPUs with Ray Data LLM's vLLM processor
(``ray.data.llm.build_processor``), inside the same Ray Data graph.

Rows in. The packer's token ids go in as ``tokenized_prompt``, with the
processor's chat-template, tokenize and detokenize stages off: what the GPU
sees is exactly what was counted, and document text never becomes a control
token (DESIGN 5). Rows carry no document text, and lose their packed ids
before the processor and vLLM's returned prompt ids after it (a 128K prompt
is about a megabyte per row). Each row's ``sampling_params``: ``max_tokens``
(vLLM's default is 16), ``temperature`` 0, Llama 3.1's end-of-turn ids as
``stop_token_ids``, and the JSON schema, as text, under ``structured_outputs``
(``{"json": ..., "disable_any_whitespace": true}``: the keys of vLLM's
``StructuredOutputsParams``, which Ray 2.60's vLLM stage builds from that
entry). The engine decodes with xgrammar and no free whitespace
(``structured_outputs_config``; vLLM's xgrammar backend reads that setting
from the engine, not from the request).

Results out. Each output is validated against the schema (infer.py's
``record_completion``). Ray 2.60 does not pass vLLM's finish reason on, so it
is vLLM's own rule over the generated ids: a stop token ends a request before
the length cap does. ``length`` is a failure recorded with its raw text.
Retry: infer.py retries a failed window once with twice the output budget.
Greedy decoding makes that retry repeat the first attempt's tokens, so this
engine sends every window with the retry's budget from the start (the window
was packed for the smaller one, so it fits) and makes no second pass: the
same result without a second 128K prefill. An output still cut at that
budget, or invalid JSON (which a retry would only repeat), is recorded with
``attempts`` 1, not retried. Row errors are kept (``should_continue_on_error``)
and become failed windows, never lost; a dead engine restarts its actor.

Replicas. One engine replica per ``tensor_parallel_size × pipeline_parallel_size``
GPUs; replicas: ``replicas``, else the job's ``engine.concurrency`` when above
1, else the Ray cluster's GPUs / GPUs per replica (set ``replicas`` on a
cluster that adds GPU nodes on demand).

Presets (``preset``), and the arithmetic behind ``max_num_seqs``. The KV cache
in bf16 takes 2 (K and V) × layers × KV heads × head dim × 2 bytes a token:
8B 2 × 32 × 8 × 128 × 2 = 128 KiB, 70B (80 layers) 320 KiB, so a 128K
sequence holds 16 GiB of KV on the 8B and 40 GiB on the 70B.

    preset    model                          TP  KV/token  KV cache of one replica (H100 80 GB, 0.90 of it)  seqs  batched
    8b-1gpu   Llama-3.1-8B-Instruct          1   128 KiB   71.3 − 15.0 weights − 3 ≈ 53 GiB ≈ 437K tokens      16    16384
    70b-4gpu  Llama-3.1-70B-Instruct         4   320 KiB   4 × (71.3 − 3) − 131.4 ≈ 142 GiB ≈ 464K tokens     16    16384

TP: tensor_parallel_size (GPUs a replica); seqs: max_num_seqs; batched:
max_num_batched_tokens; 3 GiB a GPU (``OVERHEAD_GIB``) estimates activations,
CUDA graphs and buffers. Either replica keeps about three full-length
sequences (437K / 131072 = 3.3; 464K / 131072 = 3.5). ``max_num_seqs`` caps
the sequences in flight: 16 × 27K tokens fill the cache, so 16 keeps every
admitted sequence resident while windows average under ~27K tokens (papers,
contracts); past that the cache is the limit, and a corpus of full 128K
windows does better with 4 (an evicted sequence recomputes its prefill, ~10 s
at 128K). ``max_num_batched_tokens`` is the chunked-prefill step: 16K tokens
keep the matmuls saturated while the decoding sequences ride along in each
step (DESIGN: 16K–32K). vLLM's start-up log prints the real KV cache size
("GPU KV cache size: N tokens"); ``bench/gpu_prefill.py`` measures prefill
against the roofline.

Ray Data LLM and vLLM are imported only when the graph runs (the ``vllm``
extra); this module imports without them.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from pipelines import infer  # a module reference: infer imports the engines package, which imports this
from pipelines.chat import Llama31Chat
from pipelines.engines.base import Completion, EngineError
from pipelines.tokenizer import llama3_tokenizer, special_tokens

INSTALL_HINT = "the vllm engine needs the optional extra on a Linux machine with CUDA: pip install 'longctx[vllm]'"

# Llama 3.1 ends a turn with <|eot_id|>; <|eom_id|> and <|end_of_text|> also stop
# (the Instruct model's generation_config lists all three).
STOP_TOKEN_IDS = tuple(special_tokens()[t] for t in ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"))

# Ray Data LLM's column for a row's error. Rows that carry one skip the engine
# stage and the postprocess: failed documents take that way through, untouched.
ERROR_COLUMN = "__inference_error__"
KEY_COLUMN = "window_key"  # our request id: vLLM's stage writes its own int "request_id"
NOT_SENT = "not sent: the document failed before inference"
_CARRIED = ("doc_id", "window", "windows", "units", "prompt_tokens", "max_tokens", "doc")

GIB = 1 << 30
H100_GIB = 79.2  # what CUDA reports for an 80 GB H100
OVERHEAD_GIB = 3.0  # per GPU: activations at 16K batched tokens, CUDA graphs, NCCL, allocator


@dataclass(frozen=True)
class ModelShape:
    layers: int
    kv_heads: int
    head_dim: int
    params: float  # all weights, embeddings included

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2  # K and V, bf16

    @property
    def weight_gib(self) -> float:
        return self.params * 2 / GIB


LLAMA31_8B = ModelShape(layers=32, kv_heads=8, head_dim=128, params=8.03e9)
LLAMA31_70B = ModelShape(layers=80, kv_heads=8, head_dim=128, params=70.55e9)


def kv_cache_tokens(shape: ModelShape, gpus: int, utilization: float = 0.90, gpu_gib: float = H100_GIB) -> int:
    """Tokens of KV cache one replica holds: the GPUs' share for vLLM, less weights and overhead."""
    free_gib = gpus * (gpu_gib * utilization - OVERHEAD_GIB) - shape.weight_gib
    return int(free_gib * GIB // shape.kv_bytes_per_token)


@dataclass(frozen=True)
class Preset:
    model: str
    shape: ModelShape
    tensor_parallel_size: int
    max_num_seqs: int
    max_num_batched_tokens: int


PRESETS = {
    "8b-1gpu": Preset("meta-llama/Llama-3.1-8B-Instruct", LLAMA31_8B, 1, 16, 16384),
    "70b-4gpu": Preset("meta-llama/Llama-3.1-70B-Instruct", LLAMA31_70B, 4, 16, 16384),
}


@dataclass(frozen=True)
class VLLMConfig:
    """Settings left None come from the preset. ``model``: a Hugging Face id, a
    directory present on every GPU node, or an s3:// / gs:// prefix (Ray
    downloads it). ``tokenizer``: ``llama-3.1`` (packaged) or
    ``llama-3.1:<model dir>``, what prompts are packed with. ``engine_kwargs``:
    any other vLLM engine argument; they win over ours."""

    name: ClassVar[str] = "vllm"

    preset: str = "8b-1gpu"
    model: str | None = None
    tokenizer: str = "llama-3.1"
    max_model_len: int = 131072
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int = 1
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float = 0.90
    replicas: int | None = None  # None: the job's concurrency when above 1, else GPUs / GPUs per replica
    batch_size: int = 4  # rows per batch to an engine replica; a batch returns when all its rows are done
    accelerator_type: str | None = None  # e.g. "H100": schedule replicas on that GPU only
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise EngineError(f"vllm: unknown preset '{self.preset}' (available: {', '.join(PRESETS)})")
        if self.tokenizer.partition(":")[0] != "llama-3.1":
            raise EngineError(f"vllm: tokenizer must be llama-3.1 or llama-3.1:<model dir>, not {self.tokenizer!r}")
        sizes = (self.pipeline_parallel_size, self.batch_size, self.tensor_parallel_size or 1, self.replicas or 1,
                 self.max_num_seqs or 1, self.max_num_batched_tokens or 1)  # fmt: skip
        if min(sizes) < 1 or not 0 < self.gpu_memory_utilization <= 1:
            raise EngineError("vllm: sizes must be >= 1 and gpu_memory_utilization in (0, 1]")
        if {"model", "max_model_len"} & set(self.engine_kwargs):  # the packer counts with ours
            raise EngineError("vllm: set model and max_model_len as engine options, not in engine_kwargs")

    @property
    def model_source(self) -> str:
        return self.model or PRESETS[self.preset].model

    @property
    def model_id(self) -> str:
        return f"vllm:{self.model_source}"

    @property
    def gpus_per_replica(self) -> int:
        settings = self.engine_settings()
        return settings["tensor_parallel_size"] * settings["pipeline_parallel_size"]

    def engine_settings(self) -> dict[str, Any]:
        """vLLM's engine arguments, all explicit: its defaults change between releases and GPUs."""
        p = PRESETS[self.preset]
        return {
            "max_model_len": self.max_model_len,
            "dtype": "bfloat16",
            "tensor_parallel_size": self.tensor_parallel_size or p.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": True,  # windows of one document share their head across schemas (DESIGN 4)
            "enable_chunked_prefill": True,
            "max_num_batched_tokens": self.max_num_batched_tokens or p.max_num_batched_tokens,
            "max_num_seqs": self.max_num_seqs or p.max_num_seqs,
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            **self.engine_kwargs,
        }

    def processor_config(self, replicas: int):
        """Ray Data LLM's processor settings (imports ray.data.llm, not vLLM)."""
        from ray.data.llm import vLLMEngineProcessorConfig

        settings = self.engine_settings()
        return vLLMEngineProcessorConfig(
            model_source=self.model_source,
            engine_kwargs=settings,
            concurrency=replicas,
            batch_size=self.batch_size,
            # Enough rows in flight to keep max_num_seqs running and as many waiting behind them.
            max_concurrent_batches=math.ceil(2 * settings["max_num_seqs"] / self.batch_size),
            accelerator_type=self.accelerator_type,
            should_continue_on_error=True,  # a bad row becomes a failed window, not a failed job
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,  # vLLM detokenizes the output itself
        )

    def chat_format(self) -> Llama31Chat:
        return Llama31Chat(llama3_tokenizer(self.tokenizer.partition(":")[2] or None))

    def build(self):
        raise EngineError("the vllm engine runs as Ray Data LLM's processor inside the graph (apply), not in an actor")

    def apply(self, ds, spec):
        """The graph's infer stage for this engine: window rows in, output rows out."""
        return through(ds, self.processor(spec), spec.schema, self.max_model_len)

    def processor(self, spec):
        """Ray Data LLM's vLLM processor for a graph (builds on the driver: needs the extra, not a GPU)."""
        import ray

        requested = self.replicas or (spec.concurrency if spec.concurrency > 1 else None)
        replicas = replica_count(ray.cluster_resources().get("GPU", 0), self.gpus_per_replica, requested)
        try:
            from ray.data.llm import build_processor

            return build_processor(self.processor_config(replicas), postprocess=partial(result_row, schema=spec.schema))
        except ImportError as e:  # transformers or vLLM
            raise EngineError(f"{INSTALL_HINT} ({e})") from None


def through(ds, processor, schema, max_model_len: int):
    """Window rows → the processor → the graph's output rows. The processor's
    postprocess (``result_row``) sees successful rows only; rows with an error
    come out as they were, and the last map turns them into window rows."""
    schema_json = json.dumps(schema.json_schema, separators=(",", ":"))  # property order is the output's order
    ds = ds.map(partial(to_vllm_row, schema_json=schema_json, max_model_len=max_model_len))
    ds = processor(ds)
    return ds.map_batches(partial(finish_batch, schema=schema), batch_format="pyarrow", batch_size=None)


def to_vllm_row(row: dict[str, Any], schema_json: str, max_model_len: int) -> dict[str, Any]:
    """A packed window row as the processor's input. Every row carries the error
    column: a row without it would read as an error row (None != "")."""
    out = {k: row[k] for k in _CARRIED} | {KEY_COLUMN: row["request_id"]}
    if row["window"] < 0:
        return out | {"tokenized_prompt": None, "sampling_params": None, "output_budget": 0, ERROR_COLUMN: NOT_SENT}
    ids = array("i", row["prompt"]).tolist()
    budget = infer.larger_budget(max_model_len, len(ids), row["max_tokens"])  # the retry's budget, up front
    return out | {
        "tokenized_prompt": ids,
        "sampling_params": sampling_params(schema_json, budget),
        "output_budget": budget,
        ERROR_COLUMN: "",
    }


def sampling_params(schema_json: str, max_tokens: int) -> dict[str, Any]:
    """vLLM SamplingParams fields. The schema goes as text: as a nested value,
    Arrow would make a struct type of the schema itself."""
    return {
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stop_token_ids": list(STOP_TOKEN_IDS),
        "structured_outputs": {"json": schema_json, "disable_any_whitespace": True},
    }


def finish_reason(generated: Sequence[int], max_tokens: int) -> str:
    """vLLM's own rule (its scheduler's check_stop): a stop token ends a request before the cap does."""
    if len(generated) and int(generated[-1]) in STOP_TOKEN_IDS:
        return "stop"
    return "length" if len(generated) >= max_tokens else "stop"


def result_row(row: dict[str, Any], schema) -> dict[str, Any]:
    """One processor output row → one window row (keyed by KEY_COLUMN), without
    vLLM's columns: the returned prompt ids, generated ids, metrics."""
    out = {k: row[k] for k in (KEY_COLUMN, *_CARRIED)}
    if row["window"] < 0:
        return out  # a failed document, as infer_windows passes it through
    key, budget = row[KEY_COLUMN], row["output_budget"]
    if error := row.get(ERROR_COLUMN):
        c = Completion(key, "", "error", row["prompt_tokens"], 0, error=" ".join(error.split())[:500])
    else:
        generated = row["generated_tokens"]
        c = Completion(key, row["generated_text"], finish_reason(generated, budget), row["prompt_tokens"], len(generated))
    infer.record_completion(out, c, schema, attempt=1)
    if c.finish_reason == "length":
        out["error"] += (
            f" (sent with the retry's budget up front, {budget} tokens for a window packed for {row['max_tokens']}; not retried)"
            if budget > row["max_tokens"]
            else " (no room in max_model_len for a larger output budget)"
        )
    return out


def finish_batch(batch, schema):
    """The processor's output as the graph's output rows (a pyarrow table)."""
    from pipelines.graph import out_table  # the graph imports the engines

    rows = [result_row(r, schema) if r.get(ERROR_COLUMN) else r for r in batch.to_pylist()]
    for r in rows:
        r["request_id"] = r.pop(KEY_COLUMN)
    return out_table(rows)


def replica_count(gpus: float, per_replica: int, requested: int | None) -> int:
    if requested:
        return requested
    if gpus < per_replica:
        raise EngineError(
            f"vllm: the Ray cluster has {gpus:g} GPUs and a replica needs {per_replica}; "
            "on a cluster that adds GPU nodes on demand, set the engine option replicas"
        )
    return int(gpus // per_replica)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def visible_gpus() -> tuple[int, str]:
    """(GPUs, where counted), without initialising CUDA: the Ray cluster's when
    this process has joined one, else this machine's NVIDIA device files,
    limited by CUDA_VISIBLE_DEVICES."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return int(ray.cluster_resources().get("GPU", 0)), "in the Ray cluster"
    count = len(glob.glob("/dev/nvidia[0-9]*"))
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        listed = 0
        for entry in mask.split(","):  # CUDA stops at the first invalid entry; "-1" or "" hides all
            if not entry.strip() or entry.strip().startswith("-"):
                break
            listed += 1
        count = min(count, listed)
    return count, "on this machine"
