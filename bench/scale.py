"""The pipeline at scale, without a model: N small documents through ``longctx run``
against an OpenAI-compatible stub on loopback that answers every request at once
with a valid JSON object, so only the pipeline is timed (listing, skip check,
parse and pack, the graph, merge, writes, manifest), never inference.

For each N it prints: the first run's wall time per document, the driver's peak
RSS, an unchanged rerun's wall time, a rerun's with one document changed (the
fixed cost of a run that has work: Ray's start, the actor pool), and a rerun's
with 1% of the documents changed. Each is the whole command, Ray's start-up included.

    uv run python -m bench.scale [--sizes 1000,10000] [--s3] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def note(i: int, changed: bool = False) -> str:
    """A note of about 650 tokens."""
    body = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(450))
    return f"# Note {i}\n\n{body}\n" + ("\nChanged.\n" if changed else "")


def rel(i: int) -> str:
    return f"d{i // 1000:03d}/note{i:06d}.md"  # folders (prefixes) of 1,000


class LocalStore:
    def __init__(self, root: Path, n: int) -> None:
        self.src, self.out, self.root, self.env = str(root / "src"), str(root / "out"), root, dict(os.environ)

    def put(self, i: int, text: str) -> None:
        path = self.root / "src" / rel(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def last_manifest(self) -> dict:
        path = max((self.root / "out" / "_runs").glob("*/manifest.json"), key=lambda p: p.parent.name)
        return json.loads(path.read_text())


class S3Store:
    """The loopback S3 server the tests use (moto), in this process."""

    def __init__(self, root: Path, n: int) -> None:
        import boto3

        from tests.s3server import CREDENTIALS, S3Server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self.server = S3Server().start()
        self.client = boto3.client("s3", endpoint_url=self.server.url, **_boto_credentials(CREDENTIALS))
        self.client.create_bucket(Bucket=f"scale{n}")
        self.bucket = f"scale{n}"
        self.src, self.out = f"s3://{self.bucket}/src/", f"s3://{self.bucket}/out/"
        self.env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": self.server.url}

    def put(self, i: int, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"src/{rel(i)}", Body=text.encode())

    def last_manifest(self) -> dict:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="out/_runs/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/manifest.json")]
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=max(keys))["Body"].read())


def _boto_credentials(env: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": env["AWS_SESSION_TOKEN"], "region_name": env["AWS_DEFAULT_REGION"]}  # fmt: skip


EXTRA = os.environ.get("SCALE_EXTRA", "").split()  # more `longctx run` options, to try settings


def run(store, stub: Stub) -> tuple[float, float, dict]:
    """The whole command: (wall seconds, the driver's peak RSS in MB, the manifest's counts)."""
    cmd = [LONGCTX, "run", store.src, "--out", store.out, "--schema", BRIEF, "--base-url", stub.url, "--max-model-len", "4096",
           *EXTRA]  # fmt: skip
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: nobody reads while it runs
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=store.env)
        _, status, usage = os.wait4(proc.pid, 0)  # the driver's own rusage: its peak RSS
        seconds = time.perf_counter() - t0
        if (code := os.waitstatus_to_exitcode(status)) != 0:
            err.seek(0)
            sys.exit(f"longctx run failed ({code}): {err.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, store.last_manifest()["counts"]


def measure(n: int, store, stub: Stub) -> dict:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: store.put(i, note(i)), range(n)))
    first, rss, counts = run(store, stub)
    assert counts["ok"] == n, counts
    unchanged, _, counts = run(store, stub)
    assert counts["skipped"] == n, counts
    store.put(n - 1, note(n - 1, changed=True))  # one document: the fixed cost of a run that has work
    one_doc, _, counts = run(store, stub)
    assert counts["ok"] == 1 and counts["skipped"] == n - 1, counts
    changed = range(0, n, 100)  # 1%, spread over the folders
    for i in changed:
        store.put(i, note(i, changed=True))
    one_pct, _, counts = run(store, stub)
    assert counts["ok"] == len(changed) and counts["skipped"] == n - len(changed), counts
    return {
        "documents": n,
        "first_run_s": round(first, 1),
        "ms_per_document": round(1000 * first / n, 1),
        "driver_peak_rss_mb": round(rss),
        "unchanged_rerun_s": round(unchanged, 1),
        "one_changed_s": round(one_doc, 1),
        "one_percent_changed_s": round(one_pct, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--s3", action="store_true", help="sources and results on the loopback S3 server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    stub = Stub()
    print("inference: an OpenAI-compatible stub on loopback that answers at once; only the pipeline is timed", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            store = (S3Store if args.s3 else LocalStore)(Path(tmp) / str(n), n)
            rows.append({"store": "s3" if args.s3 else "local"} | measure(n, store, stub))
            print(json.dumps(rows[-1]) if args.json else rows[-1], flush=True)
    if len(rows) >= 2 and rows[-1]["documents"] < EXTRAPOLATE_TO:
        row = extrapolate(rows[-2], rows[-1], EXTRAPOLATE_TO)
        print(json.dumps(row) if args.json else row, flush=True)
    return 0


EXTRAPOLATE_TO = 100_000  # the nightly batch of issue 14, too big for a 2-core machine's session


def extrapolate(a: dict, b: dict, n: int) -> dict:
    """A row for ``n`` documents, not measured: each figure on the line through the two
    largest sizes measured (a fixed cost plus a cost per document), marked as such. None falls
    below its figure at the larger size: a line through two noisy measures of a fixed cost
    can slope down, and no cost shrinks as the documents grow."""

    def line(key: str) -> float:
        slope = (b[key] - a[key]) / (b["documents"] - a["documents"])
        return max(b[key], b[key] + slope * (n - b["documents"]))

    first = line("first_run_s")
    return {
        "store": b["store"],
        "documents": n,
        "extrapolated": True,
        "first_run_s": round(first, 1),
        "ms_per_document": round(1000 * first / n, 1),
        "driver_peak_rss_mb": round(line("driver_peak_rss_mb")),
        "unchanged_rerun_s": round(line("unchanged_rerun_s"), 1),
        "one_changed_s": round(line("one_changed_s"), 1),
        "one_percent_changed_s": round(line("one_percent_changed_s"), 1),
    }


if __name__ == "__main__":
    sys.exit(main())
