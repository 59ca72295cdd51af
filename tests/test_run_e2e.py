"""``longctx run`` end to end: real local Ray, real embedded model (SmolLM2 on
llama.cpp), real files. Small contexts keep CPU prefill short."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import duckdb
import pytest

from tests.clirun import LONGCTX, SMALL, extract, kill_run, local_manifests, longctx, wait_until
from tests.pdfgen import lorem_pages, make_corrupt_pdf, make_pdf


def results(out: Path) -> dict[str, dict]:
    return {p.relative_to(out / "brief").as_posix(): json.loads(p.read_text()) for p in (out / "brief").rglob("*.json")}


manifests = local_manifests


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and "tmp" in p.name]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    make_pdf(src / "multi.pdf", lorem_pages(4, words_per_page=220), title="Multi")
    (src / "notes.md").write_text("# Weekly notes\n\nThe team shipped the parser and fixed two bugs.\n")
    make_corrupt_pdf(src / "broken.pdf")
    return src


def test_run_rerun_change_and_retry(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = longctx("run", str(corpus), "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    res = results(out)
    assert set(res) == {"multi.pdf.json", "notes.md.json", "broken.pdf.json"}  # one per input
    assert res["broken.pdf.json"]["status"] == "failed"
    assert res["broken.pdf.json"]["reason"].startswith("corrupt PDF")
    multi = res["multi.pdf.json"]
    assert multi["status"] == "ok" and res["notes.md.json"]["status"] == "ok"
    assert len(multi["windows"]) >= 2  # split, then merged into one result
    assert sorted(u for w in multi["windows"] for u in w["units"]) == [1, 2, 3, 4]
    assert all(w["finish_reason"] == "stop" and w["prompt_tokens"] <= 1024 for w in multi["windows"])
    assert set(multi["data"]) == {"title", "topics"} and len(multi["data"]["topics"]) <= 3
    for key in ("source", "doc_id", "schema", "schema_hash", "model", "status", "data", "windows", "errors", "fingerprint"):
        assert key in multi
    [m1] = manifests(out)
    assert m1["counts"] == {"ok": 2, "partial": 0, "failed": 1, "skipped": 0, "not_reached": 0}
    assert {Path(s["source"]).name: s["status"] for s in m1["sources"]} == {
        "multi.pdf": "ok",
        "notes.md": "ok",
        "broken.pdf": "failed",
    }
    assert m1["tokens"]["prompt"] > 0 and m1["settings"]["model"].startswith("llamacpp:")
    # what the windows were allowed, beside what they used; a GPU-time estimate is for vLLM on GPUs only
    assert m1["tokens"]["output_budget"] >= m1["tokens"]["completion"] > 0 and m1["gpu_time"] is None
    assert f"of a {m1['tokens']['output_budget']:,} budget" in proc.stdout
    # The schema's Parquet table holds what the JSON results hold, a column per field, lists as lists.
    got = duckdb.sql(f"select result_key, status, title, topics from read_parquet('{out}/brief/_table/*.parquet')")
    assert sorted(got.fetchall()) == sorted(
        (f"brief/{k}", r["status"], (r["data"] or {}).get("title"), (r["data"] or {}).get("topics")) for k, r in res.items()
    )
    assert "table" in proc.stdout and "3 rows; 1 of 1 parts rewritten" in " ".join(proc.stdout.split())

    # A rerun writes nothing, skips everything and never starts Ray (here it could not: its folder is a file).
    stamps = {p: p.stat().st_mtime_ns for p in (out / "brief").rglob("*.*")}
    (tmp_path / "not-a-folder").write_text("")
    no_ray = {**os.environ, "RAY_TMPDIR": str(tmp_path / "not-a-folder")}
    proc = longctx("run", str(corpus), "--out", str(out), *SMALL, env=no_ray)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "brief").rglob("*.*")} == stamps
    assert manifests(out)[-1]["counts"] == {"ok": 0, "partial": 0, "failed": 0, "skipped": 3, "not_reached": 0}
    # The summary's wall time is the command's (imports and listing included), not the empty run's alone.
    [wall, run] = re.findall(r"wall time\s+([\d.]+) s \(the command so far; the run ([\d.]+) s\)", proc.stdout)[0]
    assert float(wall) > float(run) and float(wall) > 0

    # A changed document, and only it, is redone.
    (corpus / "notes.md").write_text("# Weekly notes\n\nThe team shipped the packer.\n")
    proc = longctx("run", str(corpus), "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert manifests(out)[-1]["counts"] == {"ok": 1, "partial": 0, "failed": 0, "skipped": 2, "not_reached": 0}
    changed = [p for p in stamps if p.stat().st_mtime_ns != stamps[p]]
    assert sorted(p.name for p in changed) == ["notes.md.json", "part-00000.parquet"]  # the result, and its row

    # --retry-failed redoes the failed one only.
    proc = longctx("run", str(corpus), "--out", str(out), *SMALL, "--retry-failed")
    assert proc.returncode == 0, proc.stderr
    last = manifests(out)[-1]
    assert last["counts"] == {"ok": 0, "partial": 0, "failed": 1, "skipped": 2, "not_reached": 0}
    assert [Path(s["source"]).name for s in last["sources"] if s["status"] != "skipped"] == ["broken.pdf"]
    assert "documents ok" in proc.stdout and "results:" in proc.stdout
    assert leftovers(out) == []


def test_a_folder_with_nothing_to_extract_says_what_it_ignored(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "out"
    proc = longctx("run", str(src), "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert f"ignored {src / 'photo.png'} (" in text and "no documents to extract: no results written" in text
    assert "results:" not in text and not (out / "brief").exists()


def test_an_engine_that_never_starts_records_every_document_and_exits_1(corpus: Path, tmp_path: Path):
    """A GGUF with a tokenizer and template but no weights: it packs (preflight passes), but
    llama.cpp cannot load it on any worker. Every document is recorded failed with that reason,
    the manifest is written, and the command says so in one error line, exit 1."""
    from tests.ggufgen import write_llama3_gguf

    model = write_llama3_gguf(tmp_path / "no-weights.gguf")
    out = tmp_path / "out"
    proc = longctx("run", str(corpus), "--out", str(out), *SMALL, "--model", str(model))
    assert proc.returncode == 1, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: the engine did not start: llama.cpp could not load {model}")
    assert "3 documents recorded failed" in proc.stderr and "--retry-failed" in proc.stderr
    [m] = manifests(out)
    assert m["counts"]["failed"] == 3 and all(
        "engine did not start" in s["reason"] or "corrupt" in s["reason"] for s in m["sources"]
    )


def test_run_with_a_gguf_of_another_family_packs_with_its_tokenizer(tmp_path: Path):
    """A Llama 3 GGUF (one tiny random layer: its answers are noise, but constrained) runs
    through the embedded engine: the prompt llama.cpp counted is the one plan packed with
    the file's own tokenizer and template, and the output is schema-valid JSON."""
    from tests.ggufgen import write_llama3_gguf

    model = write_llama3_gguf(tmp_path / "llama3-tiny.gguf", weights=True)
    note = tmp_path / "notes.md"
    note.write_text("# Weekly notes\n\nThe team shipped the parser 数字 and fixed <|eot_id|> two bugs.\n")
    out = tmp_path / "out"
    proc = longctx("run", str(note), "--out", str(out), *SMALL, "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    [result] = results(out).values()
    assert result["status"] == "ok" and result["model"] == "llamacpp:llama3-tiny" and isinstance(result["data"]["title"], str)
    [window] = result["windows"]
    assert window["constrained"] and not window["tokens_estimated"]  # the count is llama.cpp's own
    plan = longctx("plan", str(note), "--json", *SMALL, "--model", str(model))
    assert plan.returncode == 0, plan.stderr
    assert window["prompt_tokens"] == json.loads(plan.stdout)["prompt_tokens"]


def test_a_rerun_redoes_what_a_changed_setting_changes(tmp_path: Path):
    """The fingerprint covers the limits that change a document's text, not the parse sandbox's
    bounds; a stored result that cannot be read stops the run with one line, never redone blind."""
    src = tmp_path / "in"
    src.mkdir()
    make_pdf(src / "one.pdf", lorem_pages(1, words_per_page=80), title="One")
    (src / "notes.md").write_text("# Notes\n\nThe parser shipped.\n")
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(
        json.dumps({"sources": [str(src)], "output": str(out), "schemas": [SMALL[1]], "engine": {"max_model_len": 1024}})
    )

    def rerun(*settings: str) -> dict:
        proc = extract("--config", str(job), *(a for s in settings for a in ("--set", s)))
        assert proc.returncode == 0, proc.stderr
        return manifests(out)[-1]["counts"]

    assert rerun()["ok"] == 2
    assert rerun("limits.parse_timeout_s=120")["skipped"] == 2  # a sandbox bound: nothing to redo
    assert rerun("limits.max_page_chars=100")["skipped"] == 0  # the PDF's text changes: redone, and so is the rest
    assert rerun("limits.max_page_chars=100")["skipped"] == 2
    (out / "brief" / "notes.md.json").unlink()
    (out / "brief" / "notes.md.json").mkdir()  # a result that cannot be read (as EACCES or EIO would be)
    proc = extract("--config", str(job))
    assert proc.returncode == 1, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: cannot read ") and line.endswith("notes.md.json: Is a directory")
    assert manifests(out)[-1]["stopped"] == line.removeprefix("error: ")


def test_an_unreadable_source_fails_with_its_reason_and_is_never_skipped(tmp_path: Path):
    """A file that cannot be read (EIO, even as root: a link to /proc/self/mem) gets no
    fingerprint, so every rerun tries it again instead of keeping its failure as "unchanged"."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "notes.md").write_text("# Notes\n\nThe parser shipped.\n")
    (src / "stuck.txt").symlink_to("/proc/self/mem")
    out = tmp_path / "out"
    for counts in ({"ok": 1, "failed": 1, "skipped": 0}, {"ok": 0, "failed": 1, "skipped": 1}):
        proc = longctx("run", str(src), "--out", str(out), *SMALL)
        assert proc.returncode == 0, proc.stderr
        assert "constructor arguments in the object store" not in proc.stderr  # Ray's noise (jobs/ray_noise.py)
        last = manifests(out)[-1]
        assert {k: last["counts"][k] for k in counts} == counts
        stuck = results(out)["stuck.txt.json"]
        assert stuck["status"] == "failed" and stuck["fingerprint"] is None
        assert "Input/output error" in stuck["reason"]
        assert {Path(s["source"]).name: s["status"] for s in last["sources"]}["stuck.txt"] == "failed"


def test_truncated_output_is_retried_then_recorded_with_raw_text(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = longctx("run", str(corpus / "notes.md"), "--out", str(out), *SMALL, "--max-output-tokens", "4")
    assert proc.returncode == 0, proc.stderr
    res = results(out)["notes.md.json"]
    assert res["status"] == "failed" and "max_tokens" in res["reason"]
    [w] = res["windows"]
    assert w["attempts"] == 2 and w["finish_reason"] == "length"  # retried with a larger budget
    [err] = [e for e in res["errors"] if e["stage"] == "extract"]
    assert err["raw"].startswith("{") and len(err["raw"]) > 0


def test_killed_run_resumes_with_one_result_per_document(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    names = [f"doc{i}.md" for i in range(5)]
    for i, name in enumerate(names):
        (src / name).write_text(f"# Note {i}\n\n" + " ".join(lorem_pages(1, words_per_page=120, seed=i)) + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([LONGCTX, "run", str(src), "--out", str(out), *SMALL], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: list(out.glob("brief/*.json")), "a first result", proc=proc)
    kill_run(proc)  # mid-run: the driver, its Ray instance and Ray's workers
    done_before = {p.name for p in (out / "brief").glob("*.json")}
    assert 1 <= len(done_before) < len(names)
    assert manifests(out) == []  # the killed run never finished

    proc = longctx("run", str(src), "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    res = results(out)
    assert set(res) == {f"{n}.json" for n in names}  # exactly one result per document
    assert all(r["status"] == "ok" for r in res.values())
    [m] = manifests(out)
    assert m["counts"]["skipped"] == len(done_before)
    assert m["counts"]["ok"] == len(names) - len(done_before)  # nothing done twice
    assert leftovers(out) == []
    # The killed run left no index; this one's covers every result, as stored (pipelines/skip_index.py).
    entries = json.loads((out / "_runs" / "_index" / "brief.json").read_text())["entries"]
    assert {k: e["fingerprint"] for k, e in entries.items()} == {f"brief/{k}": r["fingerprint"] for k, r in res.items()}


def test_quick_start_leaves_a_valid_result_for_every_example(tmp_path: Path):
    """The README's first command, on the bundled examples: the repository read as one, each
    example extracted (not failed), and its data valid against its schema."""
    from schemas import builtin_schema
    from schemas.evidence import evidence_fields

    as_list = lambda v: v if isinstance(v, list) else [] if v is None else [v]  # noqa: E731

    examples = Path(__file__).parent.parent / "examples"
    out = tmp_path / "out"
    proc = longctx("run", str(examples), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    found = {p.relative_to(out).as_posix(): json.loads(p.read_text()) for p in out.glob("[!_]*/*.json")}
    assert set(found) == {"paper/field-report.pdf.json", "paper/meeting-notes.md.json", "repo/tinykv.tar.gz.json"}
    for key, result in found.items():
        assert result["status"] in ("ok", "partial"), (key, result["reason"])
        builtin_schema(result["schema"]).validate(json.dumps(result["data"]))  # raises if not schema-valid
        # Every value of a field marked for evidence came with its quote, looked up in the source.
        spec = builtin_schema(result["schema"])
        values = [v for f in evidence_fields(spec.json_schema) for v in as_list(result["data"][f])]
        ev = result["evidence"]
        assert ev["missing"] == 0 and ev["verified"] + ev["unverified"] == len(values) > 0, (key, ev)
        assert all(q["verified"] == (q["found"] is not None) == (q["start"] is not None) for q in ev["quotes"])
    assert len(manifests(out)) == 2  # one run per schema


def test_readme_commands_are_the_ones_ci_runs():
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(quick) == 2
    assert quick[0].endswith("longctx run examples/ --out out")
    assert quick[1] in (root / ".ci" / "run").read_text()
