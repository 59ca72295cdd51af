"""Extraction quality per model on the generated gold set (tests/goldgen.py), side by side.

For each model (the default, SmolLM2, and every ``--model FILE.gguf``) it runs ``longctx run``
over the gold set's documents with the embedded engine, then ``longctx eval`` against the gold,
and prints each field's mean score per model, the overall mean and the run's wall time.

    uv run python -m bench.quality [--model FILE.gguf]... [--json]
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

from pipelines.evaluate import FieldScore, field_means
from tests.clirun import LONGCTX
from tests.goldgen import write_gold_set


def score(out: Path, gold: Path) -> dict[str, float]:
    proc = subprocess.run([LONGCTX, "eval", str(out), str(gold), "--json"], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return field_means([[FieldScore(f, s) for f, s in r["fields"].items()] for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="a GGUF file to score beside the default")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    columns: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        docs, gold = write_gold_set(Path(tmp) / "set")
        for model in [None, *args.model]:
            name = Path(model).name if model else "SmolLM2-135M (default)"
            out = Path(tmp) / f"out-{len(columns)}"
            t0 = time.perf_counter()
            proc = subprocess.run([LONGCTX, "run", str(docs), "--out", str(out), *(["--model", model] if model else [])],
                                  capture_output=True, text=True)  # fmt: skip
            seconds[name] = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            columns[name] = score(out, gold)
    overall = {m: sum(v.values()) / len(v) for m, v in columns.items()}
    if args.json:
        for m, fields in columns.items():
            print(json.dumps({"model": m, "fields": fields, "mean": overall[m], "seconds": round(seconds[m], 1)}))
        return 0
    table = Table("field", *columns, box=None)
    for field in next(iter(columns.values())):
        table.add_row(field, *(f"{columns[m][field]:.2f}" for m in columns))
    table.add_row("mean", *(f"{overall[m]:.2f}" for m in columns))
    table.add_row("run time", *(f"{seconds[m]:.0f} s" for m in columns))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
