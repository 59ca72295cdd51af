import json

from pipelines.records import SourceRef
from pipelines.results import RunIdentity, document_result, result_key, source_key
from pipelines.storage import TEMP_SUFFIX, LocalStorage
from schemas import builtin_schema

SPEC = builtin_schema("repo")
IDENT = RunIdentity("repo", SPEC.hash, "m", "1", 8192, 100)
GOOD = {"name": "x", "purpose": "p", "languages": ["py"], "components": [], "entry_points": [], "dependencies": [], "risks": []}
DOC = {
    "source": "/in/x.zip",
    "doc_id": "x-1",
    "rel_path": "x.zip",
    "status": "ok",
    "reason": None,
    "skipped": [],
    "source_key": "k",
}


def window(i, data=None, error=None, raw=None):
    return {"window": i, "units": [f"f{i}.py"], "prompt_tokens": 10, "completion_tokens": 5, "finish_reason": "stop",
            "attempts": 1, "data": json.dumps(data) if data else None, "error": error, "raw": raw}  # fmt: skip


def test_ok_partial_failed():
    ok = document_result(IDENT, SPEC.json_schema, SPEC.validate, DOC, [window(1, {**GOOD, "languages": ["go"]}), window(0, GOOD)])
    assert ok["status"] == "ok" and ok["data"]["languages"] == ["py", "go"]
    assert [w["window"] for w in ok["windows"]] == [0, 1]
    partial = document_result(IDENT, SPEC.json_schema, SPEC.validate, DOC, [window(0, GOOD), window(1, error="bad", raw="{")])
    assert partial["status"] == "partial" and partial["errors"][0]["raw"] == "{"
    failed = document_result(IDENT, SPEC.json_schema, SPEC.validate, DOC, [window(0, error="bad", raw="{x")])
    assert failed["status"] == "failed" and failed["data"] is None and failed["reason"] == "1 window(s) failed: bad"
    ingest = document_result(IDENT, SPEC.json_schema, SPEC.validate, {**DOC, "status": "failed", "reason": "corrupt"}, [])
    assert ingest["status"] == "failed" and ingest["reason"] == "corrupt" and ingest["windows"] == []


def test_fingerprint_changes_with_each_input():
    base = IDENT.fingerprint("k")
    assert base == IDENT.fingerprint("k")
    assert base != IDENT.fingerprint("k2")
    assert base != RunIdentity("repo", SPEC.hash, "other-model", "1", 8192, 100).fingerprint("k")
    assert base != RunIdentity("repo", SPEC.hash, "m", "2", 8192, 100).fingerprint("k")


def test_result_key_mirrors_the_input_path():
    ref = SourceRef("/in/a/b.pdf", "/in", "a/b.pdf", "pdf")
    assert result_key("paper", ref) == "paper/a/b.pdf.json"


def test_source_key_follows_content_and_trees(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one")
    ref = SourceRef(str(f), str(tmp_path), "a.txt", "text")
    k1 = source_key(ref)
    f.write_text("two")
    assert source_key(ref) != k1
    d = tmp_path / "repo"
    (d / ".git").mkdir(parents=True)
    (d / "x.py").write_text("x")
    tree = SourceRef(str(d), str(tmp_path), "repo", "repo")
    t1 = source_key(tree)
    (d / ".git" / "index").write_text("git internals do not count")
    assert source_key(tree) == t1
    (d / "y.py").write_text("y")
    assert source_key(tree) != t1
    assert source_key(SourceRef(str(tmp_path / "gone"), str(tmp_path), "gone", "text")).startswith("unreadable:")


def test_atomic_writes_and_cleanup(tmp_path):
    store = LocalStorage(tmp_path)
    store.write_json("paper/a.pdf.json", {"x": 1})
    assert store.read_json("paper/a.pdf.json") == {"x": 1}
    assert store.read_json("missing.json") is None
    (tmp_path / "paper" / "broken.json").write_text("{half")
    assert store.read_json("paper/broken.json") is None  # unreadable: redone, not a crash
    (tmp_path / "paper" / f".b.pdf.json.123{TEMP_SUFFIX}").write_text("{")
    assert store.remove_temporaries() == 1
    assert sorted(p.name for p in (tmp_path / "paper").iterdir()) == ["a.pdf.json", "broken.json"]
