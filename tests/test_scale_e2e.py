"""Exactly once at the size of a nightly batch: 10,000 documents, the driver killed with
SIGKILL mid-run, then the same command again. Inference is bench/scale.py's loopback stub
(it answers at once and counts requests), so the test times the pipeline, not a model."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.scale import Stub, note, rel
from pipelines.storage import TEMP_SUFFIX, LocalStorage
from tests.clirun import BRIEF, LONGCTX, kill_run, local_manifests, longctx, wait_until

N = 10_000


def stored(out: Path) -> dict[str, dict]:
    return {p.relative_to(out).as_posix(): json.loads(p.read_text()) for p in (out / "brief").rglob("*.json")}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_kill_9_mid_run_at_10000_documents_then_rerun_gives_one_result_each(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    for d in {rel(i).split("/")[0] for i in range(N)}:
        (src / d).mkdir(parents=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: (src / rel(i)).write_text(note(i)), range(N)))
    stub = Stub()
    args = ["run", str(src), "--out", str(out), "--schema", BRIEF, "--base-url", stub.url, "--max-model-len", "4096"]

    proc = subprocess.Popen([LONGCTX, *args], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    count = lambda: time.sleep(1) or sum(1 for _ in (out / "brief").rglob("*.json"))  # noqa: E731 - polled once a second
    wait_until(lambda: count() >= N // 4, "a quarter of the results", timeout=900, proc=proc)
    kill_run(proc)  # mid-run: the driver, its Ray instance and Ray's workers
    before = stored(out)
    assert N // 4 <= len(before) < N and local_manifests(out) == []  # killed mid-run: no manifest, no index
    assert not (out / "_runs" / "_index").exists()

    requests = stub.requests
    proc = longctx(*args, timeout=900)
    assert proc.returncode == 0, proc.stderr
    after = stored(out)
    assert set(after) == {f"brief/{rel(i)}.json" for i in range(N)}  # exactly one result per document
    assert all(r["status"] == "ok" for r in after.values())
    assert all(after[k] == r for k, r in before.items())  # what the killed run wrote stands
    [m] = local_manifests(out)
    assert m["counts"] == {"ok": N - len(before), "partial": 0, "failed": 0, "skipped": len(before), "not_reached": 0}
    assert stub.requests - requests == N - len(before)  # nothing inferred twice
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    # The index and the results agree: every result, its fingerprint and status, at its stored version.
    entries = json.loads((out / "_runs" / "_index" / "brief.json").read_text())["entries"]
    versions = LocalStorage(out).versions("brief/")
    assert {k: (e["fingerprint"], e["status"], e["version"]) for k, e in entries.items()} == {
        k: (r["fingerprint"], r["status"], versions[k]) for k, r in after.items()
    }
