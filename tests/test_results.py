import dataclasses
import hashlib
import json

import pytest

from pipelines.chat import Llama31Chat
from pipelines.gguf_model import gguf_chat
from pipelines.ingest import IngestLimits
from pipelines.records import SourceRef
from pipelines.results import RunIdentity, chat_format_id, document_result, limits_id, result_key, source_key
from pipelines.storage import TEMP_SUFFIX, LocalStorage, OutputError
from pipelines.tokenizer import llama3_tokenizer
from schemas import builtin_schema
from tests.ggufgen import write_llama3_gguf

SPEC = builtin_schema("repo")
IDENT = RunIdentity("repo", SPEC.hash, "m", "llama-3.1:x", "1", 8192, 100, "l")
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
    assert all(w["constrained"] and not w["tokens_estimated"] for w in ok["windows"])
    loose = document_result(IDENT, SPEC.json_schema, SPEC.validate, DOC,
                            [window(0, GOOD) | {"constrained": False, "tokens_estimated": True}])  # fmt: skip
    assert loose["windows"][0]["constrained"] is False and loose["windows"][0]["tokens_estimated"] is True
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
    for field, other in (("model", "other"), ("chat_format", "qwen2:y"), ("prompt_version", "2"), ("max_model_len", 4096),
                         ("max_output_tokens", 200), ("limits", "l2"), ("schema_hash", "h")):  # fmt: skip
        assert base != dataclasses.replace(IDENT, **{field: other}).fingerprint("k"), field
    assert IDENT.fingerprint(None) is None  # an unreadable source: never "unchanged"


def test_a_reasoning_bound_changes_the_fingerprint_and_its_absence_does_not():
    # Fingerprints from before reasoning models: the identity's fields joined, nothing more.
    before = hashlib.sha256("\n".join(["k", *(str(v) for v in dataclasses.astuple(IDENT)[:-1])]).encode()).hexdigest()[:32]
    assert IDENT.reasoning_tokens is None and IDENT.fingerprint("k") == before
    bounds = {dataclasses.replace(IDENT, reasoning_tokens=n).fingerprint("k") for n in (0, 32, 1024)}
    assert len(bounds) == 3 and before not in bounds


def test_limits_that_change_the_text_change_the_fingerprint():
    base = limits_id(IngestLimits())
    assert base != limits_id(IngestLimits(max_page_chars=1000))
    assert base != limits_id(IngestLimits(max_file_bytes=10))
    # Sandbox bounds decide only whether a parse finishes: --retry-failed redoes what they failed.
    assert base == limits_id(IngestLimits(parse_timeout_s=5, parse_memory_bytes=1 << 30))


def test_chat_format_id_tells_tokenizers_and_templates_apart(tmp_path):
    llama = chat_format_id(Llama31Chat(llama3_tokenizer()))
    assert llama == chat_format_id(Llama31Chat(llama3_tokenizer()))
    gguf = write_llama3_gguf(tmp_path / "m.gguf")
    other = chat_format_id(gguf_chat(str(gguf), "m.gguf"))
    assert other != llama


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
    assert source_key(SourceRef(str(tmp_path / "gone"), str(tmp_path), "gone", "text")) is None


def test_atomic_writes_and_cleanup(tmp_path):
    store = LocalStorage(tmp_path)
    store.write_json("paper/a.pdf.json", {"x": 1})
    assert store.read_json("paper/a.pdf.json") == {"x": 1}
    assert store.read_json("missing.json") is None
    (tmp_path / "paper" / "broken.json").write_text("{half")
    assert store.read_json("paper/broken.json") is None  # not JSON: redone, not a crash
    (tmp_path / "paper" / f".b.pdf.json.123{TEMP_SUFFIX}").write_text("{")
    assert store.remove_temporaries() == 1
    assert sorted(p.name for p in (tmp_path / "paper").iterdir()) == ["a.pdf.json", "broken.json"]


def test_a_result_that_cannot_be_read_is_an_error_not_absent(tmp_path):
    # An I/O error (here: a folder where the result should be; also EACCES, EIO) is not "no result":
    # redoing the document would hide it, as S3 does not.
    store = LocalStorage(tmp_path)
    (tmp_path / "paper" / "a.json").mkdir(parents=True)
    with pytest.raises(OutputError, match="cannot read .*a.json: Is a directory"):
        store.read_json("paper/a.json")


def test_conditional_writes(tmp_path):
    store = LocalStorage(tmp_path)
    v1 = store.write_if("_runs/l.json", {"n": 1}, None)
    assert v1 and store.write_if("_runs/l.json", {"n": 2}, None) is None  # exists already
    assert store.write_if("_runs/l.json", {"n": 2}, "stale") is None
    v2 = store.write_if("_runs/l.json", {"n": 2}, v1)
    assert v2 and v2 != v1 and store.read_versioned("_runs/l.json") == ({"n": 2}, v2)


def test_json_lines_locally_are_atomic(tmp_path):
    out = LocalStorage(tmp_path)
    out.write_lines("_runs/r/sources.jsonl", ({"i": i} for i in range(3)))
    assert (tmp_path / "_runs/r/sources.jsonl").read_text().splitlines() == ['{"i": 0}', '{"i": 1}', '{"i": 2}']

    def broken():
        yield {"i": 9}
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="cannot write .*sources.jsonl: No space left on device"):
        out.write_lines("_runs/r/sources.jsonl", broken())
    assert (tmp_path / "_runs/r/sources.jsonl").read_text().count("\n") == 3  # the old list, whole
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}"))
