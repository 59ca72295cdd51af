"""Linear-time guards, as ratios measured in one run (best of ``--runs``):

* secrets, adversarial: ``mask_secrets`` on each of the hostile 200 KB inputs of
  ``tests/test_secrets.py`` vs on 200 KB of generated code. PASS when no input costs more
  than 10x the code per byte (a quadratic scan would cost thousands).
* secrets, speed: ``mask_secrets`` over ~0.75 MB of generated code vs one pass of a simple
  regex (``\\w+``) over the same text. PASS when within 40x (measured ~12 ns/byte).
* tokenizer, long runs: encoding 1.2M chars of base64 without whitespace vs 1.2M chars of
  prose. PASS within 5x (an unsplit run costs minutes).
* partition: ``balanced_partition`` of 50,000 units vs 5,000. PASS within 20x (10x the units).

    uv run python -m bench.scaling [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from pipelines.partition import balanced_partition
from pipelines.secrets import mask_secrets
from pipelines.tokenizer import llama3_tokenizer
from tests.pdfgen import lorem_pages
from tests.repogen import synth_repo_files

SIZE = 200_000
HOSTILE = {
    "eyJ repeated": "eyJ" * 70_000,
    "PEM lines": ("-----BEGIN RSA PRIVATE KEY-----\n" + "A" * 150 + "\n") * 1_000,
    "PEM of escapes": "-----BEGIN RSA PRIVATE KEY-----" + "\\n" * 100_000,
    "URL userinfo": "://" + "a" * 100_000 + ":" + "b" * 100_000,
    "password= repeated": "password=" * 20_000,
    "open quote": "password = '" + "a" * SIZE,
    "AKIA repeated": "AKIA" * 50_000,
    "sk- run": "sk-" + "a" * SIZE,
    "spaces": " " * SIZE + "x",
}


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(runs: int) -> list[dict]:
    rows = []
    code = "\n".join(synth_repo_files(100, 250).values())
    base = best(lambda: mask_secrets(code[:SIZE]), runs) / SIZE
    worst_name, worst = max(
        ((n, best(lambda t=t: mask_secrets(t), runs) / len(t)) for n, t in HOSTILE.items()), key=lambda x: x[1]
    )
    rows.append({"check": f"secrets: worst hostile input ({worst_name}) vs code, per byte", "ratio": worst / base, "limit": 10})
    words = re.compile(r"\w+")
    rows.append({
        "check": "secrets: generated code vs one \\w+ regex pass",
        "ratio": best(lambda: mask_secrets(code), runs) / best(lambda: sum(1 for _ in words.finditer(code)), runs),
        "limit": 40,
    })  # fmt: skip
    tok = llama3_tokenizer()
    blob = "QUJDRA" * 200_000
    prose = " ".join(lorem_pages(60, words_per_page=3000))[: len(blob)]
    rows.append({"check": "tokenizer: 1.2M chars without whitespace vs prose", "ratio": best(lambda: tok.encode(blob), runs)
                 / best(lambda: tok.encode(prose), runs), "limit": 5})  # fmt: skip
    rng = random.Random(0)
    sizes = [rng.randint(50, 3000) for _ in range(50_000)]
    big = best(lambda: balanced_partition(sizes, 120_000), runs)
    small = best(lambda: balanced_partition(sizes[:5_000], 120_000), runs)
    rows.append({"check": "partition: 50,000 units vs 5,000", "ratio": big / small, "limit": 20})
    for r in rows:
        r["pass"] = r["ratio"] <= r["limit"]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = measure(args.runs)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        table = Table("check", "ratio", "limit", "", box=None)
        for r in rows:
            table.add_row(r["check"], f"{r['ratio']:.2f}", f"{r['limit']}", "PASS" if r["pass"] else "FAIL")
        Console().print(table)
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
