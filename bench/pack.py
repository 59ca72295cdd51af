"""Packing benchmark: is pack_document close to the cost of one bare tokenizer pass?

Generates, in a temp dir (not timed), a PDF of ``--pages`` lorem pages and a plain-directory
Python repository of about ``--repo-tokens`` Llama 3 tokens, then for each document measures
(best of ``--runs``, time.perf_counter):

* parse:  ``load_document(ref)``
* pack:   ``pack_document(doc, builtin_schema(paper|repo), Llama31Chat(tok), PackSettings(max_model_len))``
* encode: ``tok.encoding.encode_ordinary("\\n".join(u.text for u in doc.units))`` (the baseline)
* plan:   wall time of the ``longctx plan <path> --schema paper|repo --json`` subprocess, end to end.
  ``longctx plan`` treats a plain directory as a folder of files, not as a repository, so the
  CLI is given a git checkout (tests.repogen.make_repo(git=True)) of the same files.

ratio = encode_s / pack_s (pack speed relative to a bare encode); PASS when >= 0.5, else exit 1.

    uv run python -m bench.pack [--pages 300] [--repo-tokens 1000000] [--max-model-len 131072] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipelines.chat import Llama31Chat
from pipelines.ingest import load_document
from pipelines.packer import PackSettings, pack_document
from pipelines.records import SourceRef
from pipelines.tokenizer import llama3_tokenizer
from schemas import builtin_schema
from tests.pdfgen import lorem_pages, make_pdf
from tests.repogen import make_repo, synth_repo_files

MIN_RATIO = 0.5
LINES_PER_FILE = 250


def best_of(runs: int, fn):
    """(fastest wall time in seconds, the last result)."""
    best, result = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def repo_files(target_tokens: int, encoding) -> dict[str, str]:
    """synth_repo_files sized to about target_tokens, calibrated on a 100-file sample."""

    def count(files: dict[str, str]) -> int:
        return sum(map(len, encoding.encode_ordinary_batch(list(files.values()))))

    per_file = count(synth_repo_files(100, LINES_PER_FILE)) / 100
    return synth_repo_files(max(1, round(target_tokens / per_file)), LINES_PER_FILE)


def measure(name: str, ref: SourceRef, plan_path: Path, schema_name: str, tok, args) -> dict:
    parse_s, doc = best_of(args.runs, lambda: load_document(ref))
    if doc.status != "ok":
        raise SystemExit(f"{name}: load_document failed: {doc.reason}")
    schema, chat = builtin_schema(schema_name), Llama31Chat(tok)
    settings = PackSettings(max_model_len=args.max_model_len)
    pack_s, packed = best_of(args.runs, lambda: pack_document(doc, schema, chat, settings))
    text = "\n".join(u.text for u in doc.units)
    encode_s, ids = best_of(args.runs, lambda: tok.encoding.encode_ordinary(text))
    cli = [str(Path(sys.executable).parent / "longctx"), "plan", str(plan_path), "--schema", schema_name,
           "--max-model-len", str(args.max_model_len), "--json"]  # fmt: skip
    plan_s, proc = best_of(args.runs, lambda: subprocess.run(cli, capture_output=True, text=True))
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    plan_windows = sum(1 for r in records if r.get("status") == "ok")
    if proc.returncode != 0 or plan_windows != len(packed.windows):
        raise SystemExit(f"{name}: longctx plan rc={proc.returncode}, {plan_windows} windows "
                         f"(expected {len(packed.windows)}): {proc.stderr[-2000:]}")  # fmt: skip
    ratio = encode_s / pack_s
    return {
        "document": name,
        "units": len(doc.units),
        "text_tokens": len(ids),  # tokens of the bare units' text
        "document_tokens": packed.document_tokens,  # with unit headers, as packed
        "windows": len(packed.windows),
        "parse_s": parse_s,
        "pack_s": pack_s,
        "encode_s": encode_s,
        "pack_tokens_per_s": packed.document_tokens / pack_s,
        "ratio": ratio,
        "plan_s": plan_s,
        "verdict": "PASS" if ratio >= MIN_RATIO else "FAIL",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pack", description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--repo-tokens", type=int, default=1_000_000)
    ap.add_argument("--max-model-len", type=int, default=131_072)
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    tok = llama3_tokenizer()
    with tempfile.TemporaryDirectory(prefix="longctx-bench-") as tmp:
        root = Path(tmp)
        pdf = make_pdf(root / "paper.pdf", lorem_pages(args.pages))
        files = repo_files(args.repo_tokens, tok.encoding)
        repo = make_repo(root / "repo", files)  # plain directory: what load_document reads
        checkout = make_repo(root / "checkout" / "repo", files, git=True)  # what `longctx plan` reads
        pdf_ref = SourceRef(uri=str(pdf), root=tmp, rel_path=pdf.name, kind="pdf")
        repo_ref = SourceRef(uri=str(repo), root=tmp, rel_path=repo.name, kind="repo")
        rows = [
            measure(f"paper.pdf ({args.pages} pages)", pdf_ref, pdf, "paper", tok, args),
            measure(f"repo/ ({len(files)} files)", repo_ref, checkout, "repo", tok, args),
        ]
    ok = all(r["verdict"] == "PASS" for r in rows)
    if args.json:
        print(json.dumps({"max_model_len": args.max_model_len, "runs": args.runs, "min_ratio": MIN_RATIO,
                          "pass": ok, "documents": rows}, indent=2))  # fmt: skip
        return 0 if ok else 1
    table = Table(title=f"pack benchmark (best of {args.runs}, max_model_len {args.max_model_len:,})")
    for col in ("document", "units", "text tokens", "doc tokens", "windows", "parse s", "pack s",
                "bare encode s", "pack tok/s", "encode_s/pack_s", "plan s", f">= {MIN_RATIO}"):  # fmt: skip
        table.add_column(col, justify="left" if col == "document" else "right")
    for r in rows:
        table.add_row(
            r["document"], f"{r['units']:,}", f"{r['text_tokens']:,}", f"{r['document_tokens']:,}",
            str(r["windows"]), f"{r['parse_s']:.3f}", f"{r['pack_s']:.3f}", f"{r['encode_s']:.3f}",
            f"{r['pack_tokens_per_s']:,.0f}", f"{r['ratio']:.2f}", f"{r['plan_s']:.3f}",
            "[green]PASS[/green]" if r["verdict"] == "PASS" else "[red]FAIL[/red]",
        )  # fmt: skip
    console = Console(width=200)
    console.print(table)
    console.print("PASS" if ok else f"FAIL: pack is slower than {MIN_RATIO} x a bare encode")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
