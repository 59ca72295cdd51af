"""The hostile corpus (tests/hostile.py) through the whole job, end to end:
the run finishes, every input ends as exactly one result with a specific
reason when it is not ok, nothing is written outside the output location,
and no secret value reaches a result or the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipelines.user_schema import resolve_schema
from tests.clirun import BRIEF, extract, local_manifests
from tests.hostile import write_corpus

# Tight bounds so that the bombs and the loops bite in seconds (the ingest tests check each one).
# The time limit leaves room for the 20,000-file archive to reach its own limit on a busy machine
# (at 5 s it once ran out of time first, with the rest of the suite running beside it).
LIMITS = {"parse_timeout_s": 20, "parse_memory_bytes": 1 << 30, "max_page_chars": 10_000, "max_document_chars": 8_000}
SPECIFIC = ("parse time limit", "parse memory limit", "max_", "corrupt", "encrypted", "not UTF-8", "binary",
            "no extractable text", "too ", "cyclic", "text extraction failed")  # fmt: skip


def snapshot(root: Path, leave_out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if leave_out not in p.parents and p != leave_out}


def test_the_hostile_corpus_runs_to_one_result_each(tmp_path: Path):
    corpus = tmp_path / "corpus"
    expected = write_corpus(corpus)
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "sources": [str(corpus)], "output": str(out), "schemas": [BRIEF],
        "engine": {"name": "llamacpp", "max_model_len": 2048}, "limits": LIMITS,
    }))  # fmt: skip
    before = snapshot(tmp_path, out)
    proc = extract("--config", str(job))
    assert proc.returncode == 0, proc.stderr

    [manifest] = local_manifests(out)
    sources = {Path(s["source"]).relative_to(corpus).as_posix(): s for s in manifest["sources"]}
    results = {p.relative_to(out / "brief").as_posix().removesuffix(".json"): json.loads(p.read_text())
               for p in (out / "brief").rglob("*.json")}  # fmt: skip
    assert set(results) == set(sources)  # exactly one result per listed source
    assert sum(manifest["counts"].values()) == len(sources) and manifest["counts"]["skipped"] == 0
    for name, result in results.items():
        assert result["status"] in ("ok", "partial", "failed"), name
        if result["status"] != "ok":
            assert any(s in result["reason"] for s in SPECIFIC), (name, result["reason"])
    for name, e in expected.items():
        if e.kind == "repo":
            continue  # without .git, the repository folder is listed file by file; the ingest tests load it whole
        got = results[name]
        if e.status == "failed" and not e.limits:
            assert got["status"] == "failed" and e.reason in got["reason"], (name, got["reason"])
        for secret in e.secrets:
            assert secret not in json.dumps(got)
    for name in ("pdf/quadratic_text.pdf", "pdf/memory_bomb.pdf"):  # stopped by the sandbox, not waited for
        assert results[name]["reason"].startswith(("parse time limit", "parse memory limit")), results[name]["reason"]
    injection = results["text/injection.md"]
    assert injection["status"] == "ok"
    resolve_schema(BRIEF).validate(json.dumps(injection["data"]))  # the document's orders did not change the format

    # Nothing outside the output location changed, and no escape target exists.
    assert snapshot(tmp_path, out) == before
    for e in expected.values():
        for path in e.outside:
            assert not Path(path).exists(), path
    manifest_text = (out / "_runs").joinpath(manifest["run_id"], "manifest.json").read_text()
    for e in expected.values():
        for secret in e.secrets:
            assert secret not in manifest_text and secret not in proc.stdout + proc.stderr
