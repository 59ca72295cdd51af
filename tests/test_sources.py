import os
import subprocess
from pathlib import Path

import pytest

from pipelines.sources import SourceError, list_sources


def test_walk_finds_one_document_per_source(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    (tmp_path / "notes.md").write_text("# hi")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "sub" / "code.zip").write_bytes(b"PK")
    (tmp_path / "sub" / "img.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.txt").write_text("h")
    checkout = tmp_path / "proj"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "x.txt").write_text("inside a repo: not its own document")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    refs, ignored = list_sources([str(tmp_path)])
    assert [(r.rel_path, r.kind) for r in refs] == [
        ("a.pdf", "pdf"), ("notes.md", "text"), ("proj", "repo"), ("sub/b.txt", "text"), ("sub/code.zip", "archive"),
    ]  # fmt: skip
    assert all(r.root == str(tmp_path) for r in refs)
    reasons = {os.path.basename(s.path): s.reason for s in ignored}
    assert reasons == {"img.png": "unsupported file type", ".hidden.txt": "hidden file"}
    assert len({r.doc_id for r in refs}) == len(refs)


def test_single_file_and_duplicates(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("x")
    refs, _ = list_sources([str(f), str(f), str(tmp_path)])
    assert len(refs) == 1 and refs[0].rel_path == "one.txt"


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        list_sources([str(tmp_path / "missing")])


def test_names_that_are_not_utf8_are_ignored_with_a_printable_path(tmp_path):
    import json

    (tmp_path / "good.md").write_text("# ok")
    bad_file = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.md")
    Path(bad_file).write_text("# latin-1 name")
    bad_dir = os.fsdecode(bytes(tmp_path) + b"/d\xefr")
    os.mkdir(bad_dir)
    Path(bad_dir, "inside.md").write_text("# below a latin-1 folder")
    refs, ignored = list_sources([str(tmp_path)])
    assert [r.rel_path for r in refs] == ["good.md"]
    assert sorted(os.path.basename(s.path) for s in ignored) == ["caf\ufffd.md", "d\ufffdr"]
    assert {s.reason for s in ignored} == {"file name is not UTF-8 (rename it to read it)"}
    json.dumps([s.path for s in ignored]).encode("utf-8")  # what the manifest writes: no surrogates left
    with pytest.raises(SourceError, match="path is not UTF-8"):
        list_sources([bad_file])
