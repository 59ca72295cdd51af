"""Hostile inputs through ``load_document``: every file ends as a Document (ok, or failed with a
specific reason) within its time and memory bounds, and nothing is written outside the corpus.

The corpus (tests/hostile.py) is written once per module; the parses run in the sandbox's
child processes, as they do in Ray workers and in ``longctx plan``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.engines import engine_config
from pipelines.graph import GraphSpec, parse_and_pack
from pipelines.ingest import IngestLimits, load_document, sandbox
from pipelines.ingest.sandbox import parse_bounded
from pipelines.packer import PackSettings
from pipelines.records import Document, SourceRef
from schemas import builtin_schema
from tests import hostile
from tests.hostile import Expect, MiB, write_corpus

# Starting a fresh parser process (after a kill) and the kill itself, on a busy 2-core machine.
SLACK_S = 5.0
FAST = IngestLimits(parse_timeout_s=1, parse_memory_bytes=512 * MiB)
BUG = "parse failed: TypeError: 'NoneType' object is not subscriptable"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Expect]]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    return root, write_corpus(root)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Fresh parser processes whose working directory and temp dir are empty folders of their own:
    whatever a parser writes to a relative path or a temp file shows up there."""
    sandbox.shutdown()
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(tmp))
    yield cwd, tmp
    sandbox.shutdown()  # later tests get children with the normal environment


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (links not followed) with its size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def _problems(doc: Document, e: Expect, wall: float, limits: IngestLimits) -> list[str]:
    out = []
    if doc.status != e.status or (e.reason and e.reason not in (doc.reason or "")):
        out.append(f"got {doc.status} ({doc.reason!r}), expected {e.status} ({e.reason!r})")
    if doc.status == "failed" and (doc.units or not doc.reason or "\n" in doc.reason):
        out.append("a failed document has units, or no one-line reason")
    refs = {u.ref for u in doc.units}
    out += [f"unit {u!r} missing" for u in e.units if u not in refs]
    skipped = {s.path: s.reason for s in doc.skipped}
    for path, want in e.skipped.items():
        if want not in skipped.get(path, ""):
            out.append(f"{path!r} not skipped as {want!r}: {skipped.get(path)!r}")
    text = "\n".join(u.text for u in doc.units)
    out += [f"text lacks {v[:40]!r}" for v in e.verbatim if v not in text]
    out += [f"secret {v[:8]}... not masked" for v in e.secrets if v in text]
    if wall > limits.parse_timeout_s + SLACK_S:
        out.append(f"took {wall:.1f} s > parse_timeout_s={limits.parse_timeout_s:g} + {SLACK_S} s")
    if Document.from_row(json.loads(json.dumps(doc.to_row()))) != doc:
        out.append("the document does not survive a JSON row round trip")
    return out


def test_every_hostile_file_ends_as_expected_and_nothing_escapes(corpus, isolated) -> None:
    root, expected = corpus
    cwd, tmp = isolated
    before = _tree(root.parent)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    problems = []
    for rel, e in expected.items():
        limits = e.ingest_limits()
        path = root / rel
        t0 = time.monotonic()
        doc = load_document(SourceRef(str(path), str(path.parent), path.name, e.kind), limits)
        problems += [f"{rel}: {p}" for p in _problems(doc, e, time.monotonic() - t0, limits)]
    assert not problems, "\n".join(problems)

    # The archive reader works in memory; links, `..` and absolute members are never followed.
    assert _tree(root.parent) == before, "a file next to the corpus was written, moved or deleted"
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
    assert sorted(os.listdir(cwd.parent)) == ["cwd", "tmp"]  # nothing one level up ("../evil.py") either
    for e in expected.values():
        for p in e.outside:
            assert not os.path.lexists(p), p
    # The parent only ever holds finished documents, never a parse's expansion (the memory bomb
    # alone decodes 5.6 GB; the ceiling stopped it in the child).
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert growth_mib < 256, f"the test process grew by {growth_mib:.0f} MiB"


def _ref(tmp_path: Path, name: str = "x.txt") -> SourceRef:
    (tmp_path / name).write_text("x")
    return SourceRef(str(tmp_path / name), str(tmp_path), name, "text")


def test_a_hanging_parser_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    t0 = time.monotonic()
    doc = parse_bounded(hostile.hang, _ref(tmp_path), FAST)
    assert (doc.status, doc.reason, doc.kind) == ("failed", "parse time limit: exceeded parse_timeout_s=1", "text")
    assert time.monotonic() - t0 < FAST.parse_timeout_s + SLACK_S


def test_the_kill_takes_the_parsers_own_subprocesses(tmp_path: Path) -> None:
    ref = _ref(tmp_path, "pid.txt")
    doc = parse_bounded(hostile.hang_with_grandchild, ref, FAST)
    assert doc.reason == "parse time limit: exceeded parse_timeout_s=1"
    pid = int(Path(ref.uri).read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the parser's subprocess outlived the kill"


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_ballooning_parser_is_stopped_at_the_memory_ceiling(tmp_path: Path) -> None:
    doc = parse_bounded(hostile.balloon, _ref(tmp_path), replace(FAST, parse_timeout_s=30))
    assert doc.reason == f"parse memory limit: exceeded parse_memory_bytes={512 * MiB}"


def test_a_crash_or_a_stray_exception_is_a_failed_document(tmp_path: Path) -> None:
    crashed = parse_bounded(hostile.crash, _ref(tmp_path), FAST)
    assert crashed.reason is not None and crashed.reason.startswith("parse failed: the parser process died (killed by SIGSEGV)")
    assert "parse_memory_bytes=" in crashed.reason  # the ceiling is named as a possible cause
    bug = parse_bounded(hostile.bug, _ref(tmp_path), FAST)
    assert bug.reason == BUG


def test_the_parser_process_is_reused_then_replaced_after_a_kill(tmp_path: Path) -> None:
    ref = _ref(tmp_path)
    first, again = (parse_bounded(hostile.probe, ref, FAST).meta for _ in range(2))
    assert first["pid"] == again["pid"] != os.getpid()
    assert first["rlimit_as"] == FAST.parse_memory_bytes  # the ceiling is set in the child, per document
    unbounded = parse_bounded(hostile.probe, ref, replace(FAST, parse_memory_bytes=0)).meta
    assert unbounded["pid"] == first["pid"] and unbounded["rlimit_as"] == resource.getrlimit(resource.RLIMIT_AS)[1]
    parse_bounded(hostile.hang, ref, FAST)
    after = parse_bounded(hostile.probe, ref, FAST).meta
    assert after["pid"] != first["pid"] and not Path(f"/proc/{first['pid']}").exists()  # killed and reaped


def test_memory_left_behind_does_not_count_against_the_next_document(tmp_path: Path) -> None:
    ref = _ref(tmp_path)
    first = parse_bounded(hostile.hoard, ref, FAST)  # 300 MB under a 512 MiB ceiling, left in a cycle
    again = parse_bounded(hostile.hoard, ref, FAST)  # fits only if the first one's 300 MB were freed
    assert first.status == again.status == "ok", again.reason
    assert again.meta["pid"] == first.meta["pid"]


def test_a_changed_environment_or_directory_gets_a_fresh_parser_process(tmp_path: Path, monkeypatch) -> None:
    """S3 credentials and endpoints come from the environment: the child must see the caller's."""
    ref = _ref(tmp_path)
    before = parse_bounded(hostile.probe, ref, FAST).meta
    assert parse_bounded(hostile.probe, ref, FAST).meta["pid"] == before["pid"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    after = parse_bounded(hostile.probe, ref, FAST).meta
    assert after["pid"] != before["pid"] and after["env"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    monkeypatch.chdir(tmp_path)
    moved = parse_bounded(hostile.probe, ref, FAST).meta
    assert moved["pid"] != after["pid"] and moved["cwd"] == str(tmp_path)


def test_concurrent_callers_get_a_parser_process_each(tmp_path: Path) -> None:
    barrier = threading.Barrier(2)

    def call(_: int) -> int:
        barrier.wait()
        doc = parse_bounded(hostile.probe, _ref(tmp_path), FAST)
        assert doc.status == "ok", doc.reason
        return doc.meta["pid"]

    sandbox.shutdown()
    with ThreadPoolExecutor(2) as pool:
        pids = list(pool.map(call, range(2)))
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert len(sandbox._idle) == len(set(pids))  # both went back to the idle list


def test_both_bounds_off_parse_in_this_process(tmp_path: Path) -> None:
    off = IngestLimits(parse_timeout_s=0, parse_memory_bytes=0)
    assert parse_bounded(hostile.probe, _ref(tmp_path), off).meta["pid"] == os.getpid()
    assert parse_bounded(hostile.bug, _ref(tmp_path), off).reason == BUG


def _item(path: Path, kind: str) -> dict:
    ref = {"uri": str(path), "root": str(path.parent), "rel_path": path.name, "kind": kind}
    return {"ref": json.dumps(ref), "source_key": "k"}


def _spec(limits: IngestLimits) -> GraphSpec:
    return GraphSpec(builtin_schema("paper"), engine_config("llamacpp", max_model_len=2048), PackSettings(2048, 256), limits)


def test_the_graphs_parse_task_is_bounded(corpus) -> None:
    """parse_and_pack (a Ray task; ``longctx plan`` runs the same load_and_pack) gets the bound."""
    root, _ = corpus
    t0 = time.monotonic()
    [row] = parse_and_pack(_item(root / "pdf/quadratic_text.pdf", "pdf"), _spec(FAST))
    assert time.monotonic() - t0 < 1 + SLACK_S
    assert row["window"] == -1 and json.loads(row["doc"])["reason"] == "parse time limit: exceeded parse_timeout_s=1"
    rows = parse_and_pack(_item(root / "pdf/long_page.pdf", "pdf"), _spec(replace(FAST, max_page_chars=10_000)))
    doc = json.loads(rows[0]["doc"])  # a cut page reaches the result's skipped_files
    cut = {"path": "page 1", "reason": "text cut: 59999 chars > max_page_chars=10000"}
    assert doc["status"] == "ok" and doc["skipped"] == [cut]


def test_the_bound_holds_in_a_ray_worker(corpus) -> None:
    """A Ray worker is the parent: its parse tasks start parser processes of their own."""
    ray = pytest.importorskip("ray")
    root, _ = corpus
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.ERROR)
    try:
        task = ray.remote(parse_and_pack)
        slow = task.remote(_item(root / "pdf/quadratic_text.pdf", "pdf"), _spec(FAST))
        fine = task.remote(_item(root / "archives/traversal.tar.gz", "archive"), _spec(FAST))
        [slow_row], fine_rows = ray.get([slow, fine], timeout=120)
    finally:
        if started:
            ray.shutdown()
    assert json.loads(slow_row["doc"])["reason"] == "parse time limit: exceeded parse_timeout_s=1"
    assert json.loads(fine_rows[0]["doc"])["status"] == "ok" and fine_rows[0]["window"] == 0
