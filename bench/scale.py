"""The pipeline at scale, without a model: N small documents through ``longctx run``
against an OpenAI-compatible stub on loopback that answers every request at once
with a valid JSON object, so only the pipeline is timed (listing, skip check,
parse and pack, the graph, merge, writes, manifest), never inference.

For each N it prints: the first run's wall time per document, the driver's peak
RSS, an unchanged rerun's wall time, and a rerun's with 1% of the documents
changed. Each is the whole command, Ray's start-up included.

    uv run python -m bench.scale [--sizes 1000,10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.clirun import BRIEF, LONGCTX

ANSWER = json.dumps({"title": "A note", "topics": ["pipeline"]})
WORDS = ["the", "parser", "reads", "each", "page", "and", "the", "packer", "counts", "every", "token", "exactly"]


class Stub:
    """/v1/models with one model; /v1/completions answered at once, with usage."""

    def __init__(self) -> None:
        self.requests = 0

        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer({"object": "list", "data": [{"id": "stub", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                stub.requests += 1
                prompts = body.get("prompt") or [[]]
                n = len(prompts[0]) if isinstance(prompts[0], list) else len(prompts)
                self._answer({
                    "id": "x", "object": "text_completion", "model": "stub",
                    "choices": [{"index": 0, "text": ANSWER, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": n, "completion_tokens": 12, "total_tokens": n + 12},
                })  # fmt: skip

            def _answer(self, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def write_docs(root: Path, n: int) -> list[Path]:
    """``n`` notes of about 650 tokens, in folders of 1,000."""
    paths = []
    for i in range(n):
        path = root / f"d{i // 1000:03d}" / f"note{i:06d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(450))
        path.write_text(f"# Note {i}\n\n{body}\n")
        paths.append(path)
    return paths


def run(src: Path, out: Path, stub: Stub) -> tuple[float, float, dict]:
    """The whole command: (wall seconds, the driver's peak RSS in MB, the manifest's counts)."""
    cmd = [LONGCTX, "run", str(src), "--out", str(out), "--schema", BRIEF, "--base-url", stub.url, "--max-model-len", "4096"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # the driver's own rusage: its peak RSS
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"longctx run failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    manifest = max((out / "_runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return seconds, usage.ru_maxrss / 1024, json.loads(manifest.read_text())["counts"]


def measure(n: int, tmp: Path, stub: Stub) -> dict:
    src, out = tmp / f"src{n}", tmp / f"out{n}"
    paths = write_docs(src, n)
    first, rss, counts = run(src, out, stub)
    assert counts["ok"] == n, counts
    unchanged, _, counts = run(src, out, stub)
    assert counts["skipped"] == n, counts
    k = max(1, n // 100)
    changed = paths[:: n // k][:k]  # 1%, spread over the folders
    for p in changed:
        p.write_text(p.read_text() + "\nChanged.\n")
    one_pct, _, counts = run(src, out, stub)
    assert counts["ok"] == len(changed) and counts["skipped"] == n - len(changed), counts
    return {
        "documents": n,
        "first_run_s": round(first, 1),
        "ms_per_document": round(1000 * first / n, 1),
        "driver_peak_rss_mb": round(rss),
        "unchanged_rerun_s": round(unchanged, 1),
        "one_percent_changed_s": round(one_pct, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    stub = Stub()
    print("inference: an OpenAI-compatible stub on loopback that answers at once; only the pipeline is timed", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(n, Path(tmp), stub))
            print(json.dumps(rows[-1]) if args.json else rows[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
