"""Pipeline overhead benchmark: `longctx run`'s path (Ray + Ray Data graph) vs a bare llama.cpp loop
over the SAME packed prompts, in one process.

Generates (not timed) ``--docs`` lorem PDFs of ``--pages`` pages in a temp dir; schema
tests/data/brief.schema.json (small output, so prefill dominates); engine LlamaCppConfig(max_model_len=
``--max-model-len``, n_threads=``--threads``), the default SmolLM2 GGUF. Then, timed with perf_counter:

* ray_init:  ``ray.init(address="local", include_dashboard=False)``, as jobs/runner.py start_ray does
* pipeline:  list_sources + ``run_extraction(refs, GraphSpec(...), LocalStorage)``, listing to manifest
  written (parse tasks, actor start, model load, inference, merge, result writes)
* load:      ``LlamaCppConfig(...).build()`` in this process (after ray.shutdown())
* bare:      after loading and packing every document the same way (not timed), one ``infer_windows(engine,
  schema, max_model_len, [row])`` per window: engine.generate + validation (+ the same retry policy), one
  prompt at a time as the inference actor does (batch_size=1)

Both runs must cover the same windows and prompt tokens (manifest tokens.prompt), else exit 2.
Gate: pipeline / bare <= 1.15 (everything the CLI pays except ray.init, against the bare inference
loop without model load) -> PASS, else FAIL and exit 1. (pipeline + ray_init) / bare is printed too.

    uv run python -m bench.overhead [--docs 12] [--pages 6] [--max-model-len 8192] [--threads N] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read when ray is first imported

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import ray

from pipelines.engines.llamacpp import LlamaCppConfig
from pipelines.graph import GraphSpec
from pipelines.infer import infer_windows
from pipelines.ingest import IngestLimits, load_document
from pipelines.lease import hold_output
from pipelines.packer import PackSettings, pack_document
from pipelines.run import run_extraction
from pipelines.sources import list_sources
from pipelines.storage import LocalStorage
from pipelines.user_schema import resolve_schema
from tests.pdfgen import lorem_pages, make_pdf

MAX_RATIO = 1.15
SCHEMA = Path(__file__).resolve().parents[1] / "tests" / "data" / "brief.schema.json"


def run_pipeline(pdf_dir: Path, out: Path, spec: GraphSpec) -> dict:
    windows = 0

    def progress(event: str, info: dict) -> None:
        nonlocal windows
        windows += event == "window"

    t = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR)
    ray_init_s = time.perf_counter() - t
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars, ctx.print_on_execution_start = False, False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        t = time.perf_counter()
        refs, ignored = list_sources([str(pdf_dir)])
        store = LocalStorage(out)
        with hold_output(store, ttl_s=600, wait_s=0) as lease:
            report = run_extraction(refs, spec, store, lease, ignored=ignored, progress=progress)
        pipeline_s = time.perf_counter() - t
    finally:
        ray.shutdown()
    manifest = json.loads(Path(report.manifest).read_text())
    return {"ray_init_s": ray_init_s, "pipeline_s": pipeline_s, "windows": windows, "counts": manifest["counts"],
            "prompt_tokens": manifest["tokens"]["prompt"], "completion_tokens": manifest["tokens"]["completion"]}  # fmt: skip


def run_bare(pdf_dir: Path, spec: GraphSpec) -> dict:
    refs, _ = list_sources([str(pdf_dir)])
    chat, rows = spec.engine.chat_format(), []
    for ref in refs:
        doc = load_document(ref, spec.limits)
        for w in pack_document(doc, spec.schema, chat, spec.settings).windows:
            rows.append({"request_id": f"{doc.doc_id}:{w.index}", "doc_id": doc.doc_id, "window": w.index,
                         "prompt_ids": w.prompt_ids, "prompt_tokens": w.prompt_tokens,
                         "max_tokens": w.max_output_tokens})  # fmt: skip
    t = time.perf_counter()
    engine = spec.engine.build()
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    out = [o for r in rows for o in infer_windows(engine, spec.schema, spec.settings.max_model_len, [r])]
    bare_s = time.perf_counter() - t
    return {"load_s": load_s, "bare_s": bare_s, "windows": len(rows), "valid": sum(o["data"] is not None for o in out),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "completion_tokens": sum(o["completion_tokens"] for o in out)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=12)  # amortises Ray's fixed start-up (~6 s)
    ap.add_argument("--pages", type=int, default=6, help="lorem pages per PDF (350 words each)")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=None, help="LlamaCppConfig.n_threads (default: every CPU)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    config = LlamaCppConfig(max_model_len=args.max_model_len, n_threads=args.threads)
    spec = GraphSpec(schema=resolve_schema(str(SCHEMA)), engine=config, limits=IngestLimits(),
                     settings=PackSettings(max_model_len=args.max_model_len))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="longctx-overhead-") as tmp:
        (pdf_dir := Path(tmp) / "pdfs").mkdir()
        for i in range(args.docs):
            make_pdf(pdf_dir / f"doc{i:02d}.pdf", lorem_pages(args.pages, seed=i), title=f"Document {i}")
        load = [os.getloadavg()[0]]  # other load on the machine skews both runs; report it
        pipe = run_pipeline(pdf_dir, Path(tmp) / "out", spec)
        load.append(os.getloadavg()[0])
        bare = run_bare(pdf_dir, spec)
        load.append(os.getloadavg()[0])
    same = (pipe["windows"], pipe["prompt_tokens"]) == (bare["windows"], bare["prompt_tokens"])
    ratio = pipe["pipeline_s"] / bare["bare_s"]
    ratio_init = (pipe["pipeline_s"] + pipe["ray_init_s"]) / bare["bare_s"]
    ok = same and ratio <= MAX_RATIO
    result = {"docs": args.docs, "pages": args.pages, "max_model_len": args.max_model_len, "n_threads": args.threads,
              "cpus": os.cpu_count(), "loadavg_1m": load, "schema": "tests/data/brief.schema.json", "pipeline": pipe,
              "bare": bare, "ratio": ratio, "ratio_with_ray_init": ratio_init, "max_ratio": MAX_RATIO,
              "same_work": same, "pass": ok}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else (2 if not same else 1)
    p, b = pipe, bare
    print(f"{args.docs} docs x {args.pages} pages, schema brief, max_model_len {args.max_model_len}, n_threads "
          f"{args.threads or 'all'} of {os.cpu_count()} CPUs; 1-min loadavg start/after pipeline/after bare "
          + "/".join(f"{x:.2f}" for x in load))  # fmt: skip
    work = f"{p['windows']} windows / {p['prompt_tokens']:,} prompt / {p['completion_tokens']} output tokens"
    print(f"work      pipeline {work} {p['counts']}; bare {b['windows']} / {b['prompt_tokens']:,} / {b['completion_tokens']}")
    print(f"ray.init  {p['ray_init_s']:8.2f} s")
    print(f"pipeline  {p['pipeline_s']:8.2f} s  (list -> manifest; incl. actor start + model load)")
    print(f"load      {b['load_s']:8.2f} s  (bare model load, not in the ratio)")
    print(f"bare      {b['bare_s']:8.2f} s  (infer_windows loop, one window at a time)")
    print(f"ratio     {ratio:8.3f}    pipeline / bare  <- gate, <= {MAX_RATIO}")
    print(f"ratio+init{ratio_init:8.3f}    (ray.init + pipeline) / bare, informational")
    if not same:
        print("FAIL: the runs processed different work (windows or prompt tokens differ)")
        return 2
    print("PASS" if ok else f"FAIL: pipeline is {100 * (ratio - 1):.1f}% slower than bare inference (> {MAX_RATIO})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
