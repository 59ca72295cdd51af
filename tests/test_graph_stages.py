"""The graph's stage functions as plain functions, without Ray."""

import json
from array import array

import pytest

from pipelines.engines import engine_config
from pipelines.graph import SMALL_SOURCE_BYTES, GraphSpec, blocks, parse_and_pack
from pipelines.ingest import IngestLimits
from pipelines.packer import PackSettings
from pipelines.records import SourceRef
from pipelines.sources import source_size
from schemas import builtin_schema
from tests.pdfgen import lorem_pages, make_corrupt_pdf, make_pdf


def spec() -> GraphSpec:
    engine = engine_config("llamacpp", max_model_len=2048)
    return GraphSpec(builtin_schema("paper"), engine, PackSettings(2048, 256), IngestLimits())


def item(path, kind="pdf") -> dict:
    ref = SourceRef(str(path), str(path.parent), path.name, kind)
    return {"ref": json.dumps({"uri": ref.uri, "root": ref.root, "rel_path": ref.rel_path, "kind": ref.kind}), "source_key": "k"}


def test_parse_and_pack_gives_one_row_per_window(tmp_path):
    make_pdf(tmp_path / "a.pdf", lorem_pages(6, words_per_page=250))
    rows = parse_and_pack(item(tmp_path / "a.pdf"), spec())
    assert len(rows) == rows[0]["windows"] > 1
    assert [r["window"] for r in rows] == list(range(len(rows)))
    assert sorted(p for r in rows for p in json.loads(r["units"])) == [1, 2, 3, 4, 5, 6]
    chat = spec().engine.chat_format()
    for r in rows:
        ids = array("i", r["prompt"]).tolist()
        assert len(ids) == r["prompt_tokens"] <= 2048 - 256
        assert "BEGIN DOCUMENT" in chat.tokenizer.decode(ids)
        assert r["max_tokens"] == 256 and json.loads(r["doc"])["status"] == "ok"


def test_parse_and_pack_turns_a_bad_document_into_one_failed_row(tmp_path):
    make_corrupt_pdf(tmp_path / "bad.pdf")
    [row] = parse_and_pack(item(tmp_path / "bad.pdf"), spec())
    assert row["window"] == -1 and row["windows"] == 0 and row["prompt"] == b""
    doc = json.loads(row["doc"])
    assert doc["status"] == "failed" and doc["reason"].startswith("corrupt PDF")


def test_too_small_a_context_is_a_failed_document_not_a_crash(tmp_path):
    make_pdf(tmp_path / "a.pdf", ["text"])
    engine = engine_config("llamacpp", max_model_len=600)
    tiny = GraphSpec(builtin_schema("paper"), engine, PackSettings(600, 256), IngestLimits())
    [row] = parse_and_pack(item(tmp_path / "a.pdf"), tiny)
    assert row["window"] == -1 and "leaves" in json.loads(row["doc"])["reason"]


def test_an_engine_that_cannot_start_fails_its_windows_not_the_run(tmp_path):
    """The inference actor with an engine whose model is gone (it was there at packing): every
    window comes back failed with the reason, failed documents pass through, nothing raises."""
    import dataclasses
    import shutil

    import pyarrow as pa

    from pipelines.graph import InferActor
    from pipelines.infer import OUT_SCHEMA
    from pipelines.model_files import smollm2_path

    gguf = shutil.copy(str(smollm2_path()), tmp_path / "model.gguf")
    good = dataclasses.replace(spec(), engine=engine_config("llamacpp", model=str(gguf), max_model_len=2048))
    make_pdf(tmp_path / "a.pdf", lorem_pages(6, words_per_page=250))
    make_corrupt_pdf(tmp_path / "bad.pdf")
    rows = parse_and_pack(item(tmp_path / "a.pdf"), good) + parse_and_pack(item(tmp_path / "bad.pdf"), good)
    (tmp_path / "model.gguf").unlink()
    out = InferActor(good)(pa.Table.from_pylist(rows)).to_pylist()
    assert len(out) == len(rows) and set(out[0]) == set(OUT_SCHEMA.names)
    *windows, failed_doc = out
    assert failed_doc["window"] == -1 and failed_doc["error"] is None and failed_doc["attempts"] == 0
    for w in windows:
        assert w["finish_reason"] == "error" and w["data"] is None and w["attempts"] == 1
        assert w["error"] == f"engine error: the engine did not start: llamacpp model file not found: {gguf}"


def test_a_batch_is_tried_again_on_a_fresh_engine(tmp_path):
    """The engine could not start (its model was not there yet); the batch gets a fresh one,
    ``engine_restarts`` times at most, and runs on it."""
    import dataclasses
    import shutil

    import pyarrow as pa

    from pipelines.graph import InferActor
    from pipelines.model_files import smollm2_path

    gguf = tmp_path / "model.gguf"
    shutil.copy(str(smollm2_path()), gguf)
    good = dataclasses.replace(spec(), engine=engine_config("llamacpp", model=str(gguf), max_model_len=2048), engine_restarts=1)
    (tmp_path / "a.md").write_text("# Sparse widgets\n\nA short note on widgets.\n")
    rows = parse_and_pack(item(tmp_path / "a.md", "text"), good)
    shutil.move(gguf, tmp_path / "away.gguf")
    actor = InferActor(good)
    assert actor.engine is None and actor.builds == 1
    shutil.move(tmp_path / "away.gguf", gguf)
    [w] = actor(pa.Table.from_pylist(rows)).to_pylist()
    assert actor.builds == 2 and w["finish_reason"] in ("stop", "length") and not (w["error"] or "").startswith("engine error"), w
    gguf.unlink()  # gone for good: one more try on a fresh engine, then the window fails
    actor.engine = None
    [w] = actor(pa.Table.from_pylist(rows)).to_pylist()
    assert actor.builds == 3 and w["error"].startswith("engine error: the engine did not start")


def test_the_driver_drops_a_window_delivered_twice_and_counts_it():
    from pipelines.run import documents

    def row(doc, window, windows):
        return {"doc_id": doc, "window": window, "windows": windows, "error": None}

    # b's window 0 comes again (its batch re-ran after the actor died), and so does the finished a;
    # a failed document is one row.
    rows = [row("b", 0, 2), row("a", 0, 1), row("b", 0, 2), row("c", -1, 0), row("a", 0, 1), row("b", 1, 2)]
    deliveries, seen = {"rows": 0, "repeated": 0}, []
    done = list(documents(rows, deliveries, seen.append))
    assert [(d, sorted(r["window"] for r in w)) for d, w in done] == [("a", [0]), ("c", [-1]), ("b", [0, 1])]
    assert deliveries == {"rows": 6, "repeated": 2}
    assert [(r["doc_id"], r["window"]) for r in seen] == [("b", 0), ("a", 0), ("b", 1)]  # each window once
    with pytest.raises(RuntimeError, match=r"incomplete documents: \['d'\]"):
        list(documents([row("d", 0, 2)], {"rows": 0, "repeated": 0}))


def test_small_sources_share_parse_blocks_and_large_ones_stay_alone():
    small = [{"ref": f"s{i}", "source_key": "k", "size": 1000} for i in range(100)]
    large = [{"ref": "big", "source_key": "k", "size": SMALL_SOURCE_BYTES + 1}, {"ref": "tree", "source_key": "k", "size": -1}]
    out = blocks(large[:1] + small + large[1:], per_block=32)  # Ray is not started here: one CPU
    alone = [[{"ref": "big", "source_key": "k", "result_key": None}], [{"ref": "tree", "source_key": "k", "result_key": None}]]
    assert [b for b in out if len(b) == 1] == alone
    grouped = [b for b in out if len(b) > 1]
    assert [len(b) for b in grouped] == [25, 25, 25, 25]  # at least four blocks per CPU, so none waits on another
    assert [i["ref"] for b in grouped for i in b] == [f"s{i}" for i in range(100)]  # every source once, in order
    assert [len(b) for b in blocks(small[:3])] == [1, 1, 1]


def test_source_size_from_the_listing_or_the_file(tmp_path):
    (tmp_path / "a.md").write_text("12345")
    assert source_size(SourceRef(str(tmp_path / "a.md"), str(tmp_path), "a.md", "text")) == 5
    assert source_size(SourceRef("s3://b/k.pdf", "s3://b/", "k.pdf", "pdf", "etag:abc-2:123")) == 123
    assert source_size(SourceRef("s3://b/r/", "s3://b/", "r", "repo", "tree:x:9")) == -1  # trees expand
    assert source_size(SourceRef(str(tmp_path / "gone.md"), str(tmp_path), "gone.md", "text")) == -1


def test_the_finish_stage_writes_one_window_documents_and_passes_longer_ones_on(tmp_path):
    """A one-window document and one that failed to parse are merged, written and come out as
    outcomes; a longer document's rows pass through whole; a write that fails is reported."""

    from pipelines.finish import Writer, finish_documents
    from pipelines.infer import engine_failed, out_table
    from pipelines.results import RunIdentity
    from pipelines.storage import LocalStorage

    s = spec()
    make_pdf(tmp_path / "long.pdf", lorem_pages(6, words_per_page=250))
    make_corrupt_pdf(tmp_path / "bad.pdf")
    (tmp_path / "a.md").write_text("# Sparse widgets\n\nA short note.\n")
    rows = [
        r | {"prompt_ids": array("i", r.pop("prompt")).tolist()}
        for name, kind in (("long.pdf", "pdf"), ("bad.pdf", "pdf"), ("a.md", "text"))
        for r in parse_and_pack(item(tmp_path / name, kind) | {"result_key": f"paper/{name}.json"}, s)
    ]
    rows = engine_failed(rows, "down")
    note = rows[-1]
    paper = {"title": "Sparse widgets", "authors": [], "year": None, "document_type": None, "summary": "s"}
    paper |= {"research_questions": [], "methods": [], "key_findings": [], "limitations": []}
    note["data"], note["error"], note["completion_tokens"] = json.dumps(s.schema.validate(json.dumps(paper))), None, 9
    ident = RunIdentity("paper", "h", "m", "c", "p", 2048, 256, "l")
    batch = out_table(rows)

    out = finish_documents(batch, Writer(s.schema, ident, LocalStorage(tmp_path / "out"))).to_pylist()
    assert len(out) == len(rows) and [r["outcome"] for r in out[:-2]] == [None] * (len(rows) - 2)
    assert [r["doc"] for r in out[:-2]] == [r["doc"] for r in rows[:-2]]  # the long document's rows, whole
    bad, done = (json.loads(r["outcome"]) for r in out[-2:])
    assert bad["outcome"]["status"] == "failed" and bad["outcome"]["reason"].startswith("corrupt PDF")
    assert done["outcome"] | {"reason": None} == {
        "source": str(tmp_path / "a.md"), "doc_id": rows[-1]["doc_id"], "status": "ok", "reason": None,
        "result": str(tmp_path / "out/paper/a.md.json"), "prompt_tokens": note["prompt_tokens"], "completion_tokens": 9,
        "evidence": {"verified": 0, "unverified": 0, "missing": 1},  # a title given without its quote
    }  # fmt: skip
    stored = json.loads((tmp_path / "out/paper/a.md.json").read_text())
    assert done["entry"] == {"fingerprint": stored["fingerprint"], "status": "ok"} and stored["data"]["title"] == "Sparse widgets"
    assert json.loads((tmp_path / "out/paper/bad.pdf.json").read_text())["status"] == "failed"

    (tmp_path / "ro").write_text("a file where the output folder should be")
    failed = finish_documents(batch.slice(len(rows) - 1), Writer(s.schema, ident, LocalStorage(tmp_path / "ro" / "out")))
    [r] = failed.to_pylist()
    assert json.loads(r["outcome"])["write_error"].startswith(f"cannot write {tmp_path / 'ro' / 'out'}")
