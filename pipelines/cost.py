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

The same tokens at hosted APIs' batch rates (``API_PRICES``, or the user's file):
counted with Llama 3.1's tokenizer, which the hosted models do not share, so
good to perhaps a tenth or two; output again at its whole budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.engines.vllm import PRESETS, Preset, kv_cache_tokens

H100_BF16_FLOPS = 989e12
H100_HBM_BYTES_PER_S = 3.35e12
# USD per GPU-hour: an assumption, not a quote (on-demand H100s from GPU clouds ran
# about $2-4 an hour in 2025-2026); set yours with --gpu-hour-price.
DEFAULT_GPU_HOUR_PRICE = 2.50


class TokenPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)  # USD per million prompt tokens
    output: float = Field(ge=0)  # USD per million output tokens


class ApiPrices(BaseModel):
    """A price table: ``--api-prices FILE`` takes the same shape as JSON."""

    model_config = ConfigDict(extra="forbid")
    date: str  # when the prices were read
    source: str
    prices: dict[str, TokenPrice]


# Batch rates (half the providers' standard rates), per million tokens.
API_PRICES = ApiPrices(
    date="2026-12-02",
    source="Anthropic's batch-processing documentation; OpenAI's batch rates as listed by third-party price trackers",
    prices={
        "openai/gpt-4o-mini": TokenPrice(input=0.075, output=0.30),
        "openai/gpt-4.1": TokenPrice(input=1.00, output=4.00),
        "anthropic/claude-3.5-haiku": TokenPrice(input=0.40, output=2.00),
        "anthropic/claude-sonnet-4": TokenPrice(input=1.50, output=7.50),
    },
)


class PriceFileError(ValueError):
    """A price file that cannot be used; the message is one line."""


def load_api_prices(path: Path) -> ApiPrices:
    try:
        return ApiPrices.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as e:
        first = e.errors()[0] if isinstance(e, ValidationError) else None
        why = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(e).splitlines()[0]
        raise PriceFileError(f"price file {path}: {why}") from None


@dataclass(frozen=True)
class ApiCost:
    model: str
    dollars: float  # at most: output at its whole budget


def api_costs(windows: Iterable[tuple[int, int]], table: ApiPrices = API_PRICES) -> list[ApiCost]:
    prompt = output = 0
    for prompt_tokens, output_tokens in windows:
        prompt, output = prompt + prompt_tokens, output + output_tokens
    return [ApiCost(name, (prompt * p.input + output * p.output) / 1e6) for name, p in table.prices.items()]


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
    per_token = (s.weights_in_bytes / batch + context * s.kv_bytes_per_token) / (H100_HBM_BYTES_PER_S * a.bandwidth_use)
    return output_tokens * per_token


def prefill_gpu_seconds(preset: Preset, prompt_tokens: int, a: CostAssumptions) -> float:
    return prefill_flops(preset, prompt_tokens) / (H100_BF16_FLOPS * a.mfu)


def preset_cost(name: str, windows: Iterable[tuple[int, int]], a: CostAssumptions = CostAssumptions()) -> PresetCost:
    """``windows``: (prompt tokens, output budget) of every window the run would infer."""
    preset = PRESETS[name]
    prefill = decode = 0.0
    for prompt_tokens, output_tokens in windows:
        prefill += prefill_gpu_seconds(preset, prompt_tokens, a)
        decode += decode_gpu_seconds(preset, prompt_tokens, output_tokens, a)
    hours = (prefill + decode) / 3600
    return PresetCost(name, preset.gpus, prefill / 3600, decode / 3600, hours, hours * a.gpu_hour_price)


def run_cost(windows: list[tuple[int, int]], a: CostAssumptions = CostAssumptions()) -> list[PresetCost]:
    return [preset_cost(name, windows, a) for name in PRESETS]


def cost_record(costs: list[PresetCost], a: CostAssumptions, apis: list[ApiCost], table: ApiPrices) -> dict[str, Any]:
    """The estimate as fields (``plan --json``)."""
    return {
        "gpu": "H100 SXM 80 GB",
        "assumptions": asdict(a),
        "presets": [asdict(c) for c in costs],
        "hosted_batch": {"prices_date": table.date, "models": [asdict(c) for c in apis]},
    }


def engine_preset(engine: Any) -> Preset | None:
    """The preset a run's GPU time is estimated with: the vllm engine on GPUs serving its
    preset's own model, at the run's parallelism and batch; None for anything else (another
    engine, vLLM on CPU, another model), whose shape and hardware are not known here."""
    if engine.name != "vllm" or engine.device != "cuda" or engine.model_source != PRESETS[engine.preset].model:
        return None
    s = engine.engine_settings()
    return replace(
        PRESETS[engine.preset],
        tensor_parallel_size=s["tensor_parallel_size"],
        pipeline_parallel_size=s["pipeline_parallel_size"],
        max_num_seqs=s["max_num_seqs"],
        max_num_batched_tokens=s["max_num_batched_tokens"],
    )


@dataclass
class RunTally:
    """A run's inferred windows, with what ``plan``'s arithmetic says they cost: decode at the
    whole output budget (the plan's upper bound) and at the tokens generated, to be set beside
    the GPU time the run held. Filled window by window: it keeps no per-window list."""

    preset: Preset | None = None
    assumptions: CostAssumptions = CostAssumptions()
    output_budget: int = 0
    prefill_s: float = 0.0
    decode_budget_s: float = 0.0
    decode_generated_s: float = 0.0
    held_gpu_s: float | None = None  # the engine's GPUs × the graph's wall time, model loading included

    def add(self, prompt_tokens: int, output_budget: int, completion_tokens: int) -> None:
        self.output_budget += output_budget
        if self.preset:
            a = self.assumptions
            self.prefill_s += prefill_gpu_seconds(self.preset, prompt_tokens, a)
            self.decode_budget_s += decode_gpu_seconds(self.preset, prompt_tokens, output_budget, a)
            self.decode_generated_s += decode_gpu_seconds(self.preset, prompt_tokens, completion_tokens, a)

    def gpu_time(self) -> dict[str, Any] | None:
        """Estimate against measure, for the manifest; None where no estimate applies."""
        if not self.preset:
            return None
        return {
            "gpu": "H100 SXM 80 GB",
            "model": self.preset.model,
            "assumptions": {"mfu": self.assumptions.mfu, "bandwidth_use": self.assumptions.bandwidth_use},
            "estimated_prefill_s": round(self.prefill_s, 3),
            "estimated_decode_s_at_budget": round(self.decode_budget_s, 3),
            "estimated_decode_s_at_tokens_generated": round(self.decode_generated_s, 3),
            "held_gpu_s": None if self.held_gpu_s is None else round(self.held_gpu_s, 3),
        }
