"""What a run will cost before it runs: GPU-hours and dollars per vLLM preset, from
the packed windows' exact token counts (``longctx plan``). A roofline estimate,
with its assumptions stated, to be checked against a measured run.

Prefill is compute-bound. A window of T prompt tokens costs the dense matmuls,
2 × parameters × T FLOPs, plus causal attention, 2 × layers × T² × hidden
(QKᵀ and AV, each 2·T²/2·hidden per layer): at 128K tokens on the 8B the
attention term is twice the matmuls', so it cannot be left out. GPU-seconds =
FLOPs / (peak × ``mfu``), whatever the tensor-parallel size.

Decode is bandwidth-bound. Each step of a replica reads its weights once for
the whole batch and each sequence's KV cache: a token costs (weights / batch
+ context × KV bytes a token) / (bandwidth × ``bandwidth_use``) GPU-seconds.
The batch is what the replica's KV cache holds at the window's length
(``kv_cache_tokens``), at most ``max_num_seqs``. Output tokens are not known
before the run: the estimate spends each window's whole output budget, so
decode is an upper bound.

The GPU is the presets' H100 SXM 80 GB: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3
(NVIDIA's datasheet); the FP8 405B is priced at the bf16 peak, which overstates
its prefill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.engines.vllm import PRESETS, Preset, kv_cache_tokens

H100_BF16_FLOPS = 989e12
H100_HBM_BYTES_PER_S = 3.35e12
# USD per GPU-hour: an assumption, not a quote (on-demand H100s from GPU clouds ran
# about $2-4 an hour in 2025-2026); set yours with --gpu-hour-price.
DEFAULT_GPU_HOUR_PRICE = 2.50


@dataclass(frozen=True)
class CostAssumptions:
    mfu: float = 0.40  # prefill: the share of peak FLOP/s reached (vLLM's chunked prefill at 16K tokens a step)
    bandwidth_use: float = 0.70  # decode: the share of peak HBM bandwidth reached
    gpu_hour_price: float = DEFAULT_GPU_HOUR_PRICE


@dataclass(frozen=True)
class PresetCost:
    preset: str
    gpus_per_replica: int
    prefill_gpu_hours: float
    decode_gpu_hours: float  # at most: every window spends its whole output budget
    gpu_hours: float
    dollars: float


def prefill_flops(preset: Preset, prompt_tokens: int) -> float:
    s = preset.shape
    return 2 * s.params * prompt_tokens + 2 * s.layers * prompt_tokens**2 * s.hidden


def decode_gpu_seconds(preset: Preset, prompt_tokens: int, output_tokens: int, a: CostAssumptions) -> float:
    s = preset.shape
    length = prompt_tokens + output_tokens
    batch = max(1, min(preset.max_num_seqs, kv_cache_tokens(s, preset.gpus) // length))
    context = prompt_tokens + output_tokens / 2  # the mean context over the window's decode steps
    weight_bytes = s.weight_bytes or 2 * s.params
    per_token = (weight_bytes / batch + context * s.kv_bytes_per_token) / (H100_HBM_BYTES_PER_S * a.bandwidth_use)
    return output_tokens * per_token


def preset_cost(name: str, windows: Iterable[tuple[int, int]], a: CostAssumptions = CostAssumptions()) -> PresetCost:
    """``windows``: (prompt tokens, output budget) of every window the run would infer."""
    preset = PRESETS[name]
    prefill = decode = 0.0
    for prompt_tokens, output_tokens in windows:
        prefill += prefill_flops(preset, prompt_tokens) / (H100_BF16_FLOPS * a.mfu)
        decode += decode_gpu_seconds(preset, prompt_tokens, output_tokens, a)
    hours = (prefill + decode) / 3600
    return PresetCost(name, preset.gpus, prefill / 3600, decode / 3600, hours, hours * a.gpu_hour_price)


def run_cost(windows: list[tuple[int, int]], a: CostAssumptions = CostAssumptions()) -> list[PresetCost]:
    return [preset_cost(name, windows, a) for name in PRESETS]


def cost_record(costs: list[PresetCost], a: CostAssumptions) -> dict[str, Any]:
    """The estimate as fields (``plan --json``)."""
    return {"gpu": "H100 SXM 80 GB", "assumptions": asdict(a), "presets": [asdict(c) for c in costs]}
