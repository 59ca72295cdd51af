"""The rerun's view of the stored results (pipelines/skip_index.py): from the index and one
listing, reading only the results written after the index, on local disk and on the
loopback S3 server; local sources unchanged in size and time are not hashed again."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pipelines import skip_index as X
from pipelines.records import SourceRef
from pipelines.s3 import S3Storage, s3_client
from pipelines.storage import LocalStorage
from tests.s3server import client_with_bucket

BUCKET = "longctx-index"


class CountingReads:
    """The storage, with the keys of every read_json recorded."""

    def __init__(self, store):
        self.store, self.reads = store, []

    def read_json(self, key):
        self.reads.append(key)
        return self.store.read_json(key)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "out")
    s3 = request.getfixturevalue("s3")
    client_with_bucket(s3.url, BUCKET)
    return S3Storage(f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}/", client=s3_client(s3.url))


def result(fingerprint: str | None, status: str = "ok") -> dict:
    return {"format": 1, "status": status, "fingerprint": fingerprint, "data": {"title": "t"}}


def test_a_rerun_reads_only_what_the_index_does_not_cover(store):
    keys = [f"paper/d{i}.pdf.json" for i in range(5)]
    for i, k in enumerate(keys):
        store.write_json(k, result(f"fp{i}"))
    X.write_index(store, "paper", {}, {k: {"fingerprint": f"fp{i}", "status": "ok"} for i, k in enumerate(keys)}, None)

    counting = CountingReads(store)
    index = X.read_index(counting, "paper")
    found = X.stored_results(counting, keys, index, counting.versions("paper/"))
    assert counting.reads == ["_runs/_index/paper.json"]  # the index, and no result
    assert found == {k: {"fingerprint": f"fp{i}", "status": "ok"} for i, k in enumerate(keys)}

    # A run killed after the index: it rewrote d1 and wrote d5; d6 was never written.
    store.write_json(keys[1], result("new1", "failed"))
    store.write_json("paper/d5.pdf.json", result("fp5"))
    counting.reads.clear()
    wanted = [*keys, "paper/d5.pdf.json", "paper/d6.pdf.json"]
    found = X.stored_results(counting, wanted, index, counting.versions("paper/"))
    assert sorted(counting.reads) == [keys[1], "paper/d5.pdf.json"]
    assert found[keys[1]] == {"fingerprint": "new1", "status": "failed"} and found["paper/d6.pdf.json"] is None
    assert found["paper/d5.pdf.json"] == {"fingerprint": "fp5", "status": "ok"} and found[keys[0]]["fingerprint"] == "fp0"

    # The next index keeps the old entries still current and takes this run's.
    X.write_index(store, "paper", index, {keys[1]: {"fingerprint": "new1", "status": "failed"}}, None)
    entries = X.read_index(store, "paper")
    assert sorted(entries) == keys and entries[keys[1]]["fingerprint"] == "new1"
    listed = store.versions("paper/")
    assert all(e["version"] == listed[k] for k, e in entries.items())  # the index agrees with the store

    # An unchanged rerun, given the listing it started with: no second listing, and the index is not rewritten.
    class Untouched(CountingReads):
        def versions(self, prefix):
            raise AssertionError("listed again")

        def write_json(self, key, data):
            raise AssertionError(f"wrote {key}")

    unchanged = {k: {"fingerprint": e["fingerprint"], "status": e["status"]} for k, e in entries.items()}
    X.write_index(Untouched(store), "paper", entries, unchanged, listed)
    assert X.read_index(store, "paper") == entries


def test_results_that_are_not_json_or_an_index_of_another_format(store):
    store.write_json("paper/a.json", ["not", "a", "result"])
    store.write_json(X.index_key("paper"), {"format": 99, "entries": {"paper/a.json": {"fingerprint": "x"}}})
    assert X.read_index(store, "paper") == {}
    assert X.stored_results(store, ["paper/a.json"], {}, store.versions("paper/")) == {"paper/a.json": None}


def test_unchanged_local_files_are_not_hashed_again(tmp_path: Path):
    files = []
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(f"# {name}\n")
        files.append(SourceRef(str(tmp_path / name), str(tmp_path), name, "text"))
    keys = [f"paper/{r.rel_path}.json" for r in files]
    hashed = []

    def compute(ref):
        hashed.append(ref.rel_path)
        return "sha256:" + ref.rel_path

    index = {
        k: {"source": {"uri": r.uri, "stat": X.file_stat(r), "key": f"sha256:{r.rel_path}"}}
        for k, r in zip(keys, files, strict=True)
    }
    assert X.source_keys(files, keys, index, compute) == ["sha256:a.md", "sha256:b.md"] and hashed == []
    st = os.stat(files[1].uri)
    os.utime(files[1].uri, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched: hashed again
    moved = {keys[0]: {"source": index[keys[0]]["source"] | {"uri": "/elsewhere/a.md"}}, keys[1]: index[keys[1]]}
    assert X.source_keys(files, keys, moved, compute) == ["sha256:a.md", "sha256:b.md"]
    assert sorted(hashed) == ["a.md", "b.md"]  # a: another source had that result key; b: its time changed
    s3_ref = SourceRef("s3://b/k.pdf", "s3://b/", "k.pdf", "pdf", version="etag:1")
    assert X.file_stat(s3_ref) is None and X.file_stat(SourceRef(str(tmp_path), str(tmp_path), "x", "repo")) is None
