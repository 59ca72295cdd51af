"""The GPU check in one command, for whoever first has a GPU machine: run it once,
commit the figures file it writes to the README with the date and the GPU.

    uv run --extra vllm python -m bench.gpu_check [--out gpu-check] [--prompts 2]

Steps, each a subprocess with its own time limit (about 8 minutes in all on an
H100: most of it is three vLLM start-ups), its output kept in ``OUT/<step>.log``:

1. ``gpu-tests``: ``pytest -m gpu``, the tests that need vLLM on a GPU.
2. ``prefill``: ``bench/gpu_prefill.py`` at 8K, 32K and 128K, outputs of 1 and
   512 tokens, Llama 3.1 8B's shape with dummy weights: seconds a prompt and
   the ratio to the roofline.
3. ``run``: one ``longctx run --engine vllm`` with the ``8b-1gpu`` preset on
   dummy weights over generated PDFs (about 40K tokens each, a window apiece
   at 128K): the whole graph on the GPU, its wall time and token counts.

Figures go to ``OUT/figures.json`` and, as the README's table, ``OUT/figures.md``.
A failed step is recorded with its exit code and the end of its log; the
others still run.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.model_dir import write_model_dir

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN_DOCS = 4  # documents of the run step
RUN_PAGES = 110  # lorem pages of 250 words each: about 40K tokens a document


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    timeout_s: int


def steps(out: Path, prompts: int) -> list[Step]:
    corpus, model = out / "corpus", out / "llama-3.1-8b"
    return [
        Step("gpu-tests", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")],
             180),
        Step("prefill", [sys.executable, "-m", "bench.gpu_prefill", "--json", "--prompts", str(prompts)], 150),
        Step("run", [str(BIN / "longctx"), "run", str(corpus), "--out", str(out / "results"), "--schema", "paper",
                     "--engine", "vllm", "--model", str(model), "--engine-option", "preset=8b-1gpu",
                     "--engine-option", "replicas=1", "--engine-option", "engine_kwargs={load_format: dummy}"], 120),
    ]  # fmt: skip


def prepare(out: Path) -> None:
    """The run step's inputs: generated PDFs and the 8B model directory (no weights)."""
    from tests.pdfgen import lorem_pages, make_pdf

    for i in range(RUN_DOCS):
        make_pdf(out / "corpus" / f"doc-{i}.pdf", lorem_pages(RUN_PAGES, words_per_page=250, seed=i), title=f"Document {i}")
    write_model_dir(out / "llama-3.1-8b")


def run_step(step: Step, out: Path) -> dict:
    log = out / f"{step.name}.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        try:
            rc = subprocess.run(step.argv, stdout=sink, stderr=subprocess.STDOUT, timeout=step.timeout_s, cwd=ROOT).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    result = {"step": step.name, "rc": rc, "seconds": round(time.perf_counter() - start, 1), "log": log.name}
    if rc != 0:
        result["log_tail"] = log.read_text(errors="replace")[-2000:]
    return result


def figures(out: Path, results: list[dict]) -> dict:
    """What the steps measured, read from their logs and outputs."""
    by_name = {r["step"]: r for r in results}
    found: dict = {"steps": results}
    if by_name.get("prefill", {}).get("rc") == 0:
        lines = (out / "prefill.log").read_text().splitlines()
        found["prefill"] = [json.loads(line) for line in lines if line.startswith("{")]
    if by_name.get("run", {}).get("rc") == 0:
        [manifest] = [json.loads(p.read_text()) for p in (out / "results" / "_runs").glob("*/manifest.json")]
        found["run"] = {"documents": RUN_DOCS, "counts": manifest["counts"], "tokens": manifest["tokens"],
                        "wall_seconds": manifest["wall_seconds"], "command_seconds": by_name["run"]["seconds"],
                        "gpu_time": manifest.get("gpu_time")}  # fmt: skip
    return found


def markdown(found: dict, gpu: str, day: str) -> str:
    lines = [f"GPU check, {day}, {gpu}", "", "| step | exit | seconds |", "|---|---:|---:|"]
    lines += [f"| {r['step']} | {r['rc']} | {r['seconds']:.0f} |" for r in found["steps"]]
    if found.get("prefill"):
        lines += ["", "| prompt tokens | output tokens | s/prompt | prompt tok/s | TFLOP/s | roofline s | ratio "
                      "| decode ms/step |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in found["prefill"]:
            decode = f"{r['decode_ms_per_step']:.1f}" if "decode_ms_per_step" in r else ""
            lines.append(
                f"| {r['prompt_tokens']:,} | {r['output_tokens']} | {r['s_per_prompt']:.2f} | {r['prompt_tokens_per_s']:,.0f} "
                f"| {r['tflops']:.0f} | {r['roofline_s_per_prompt']:.2f} | {r['ratio']:.2f} | {decode} |"
            )
    if run := found.get("run"):
        lines += ["", f"longctx run, 8b-1gpu, dummy weights: {run['documents']} documents, {run['tokens']['prompt']:,} prompt "
                  f"and {run['tokens']['completion']:,} completion tokens, {run['wall_seconds']:.0f} s in the graph, "
                  f"{run['command_seconds']:.0f} s for the command; counts {run['counts']}"]  # fmt: skip
        if gpu := run.get("gpu_time"):  # plan's estimate for these windows, against the GPU time the run held
            generated = gpu["estimated_prefill_s"] + gpu["estimated_decode_s_at_tokens_generated"]
            at_most = gpu["estimated_prefill_s"] + gpu["estimated_decode_s_at_budget"]
            lines.append(f"GPU time: estimated {generated:.1f} GPU-s at the tokens generated (at most {at_most:.1f}), "
                         f"held {gpu['held_gpu_s']} GPU-s, model loading included")  # fmt: skip
    return "\n".join(lines) + "\n"


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout.strip() or "no GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "no nvidia-smi"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-check"), help="where logs and figures go (default ./gpu-check)")
    ap.add_argument("--prompts", type=int, default=2, help="prompts a size in the prefill step (default 2)")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare(out)
    results = []
    for step in steps(out, args.prompts):
        results.append(run_step(step, out))
        print(f"{step.name}: exit {results[-1]['rc']} in {results[-1]['seconds']:.0f} s", flush=True)
    found = figures(out, results)
    found |= {"gpu": gpu_name(), "date": time.strftime("%Y-%m-%d"), "host": platform.node()}
    (out / "figures.json").write_text(json.dumps(found, indent=2))
    (out / "figures.md").write_text(markdown(found, found["gpu"], found["date"]))
    print(f"figures: {out / 'figures.md'}")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
