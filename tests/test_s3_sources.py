"""Sources on S3: listing, repositories as prefixes, change keys and reads,
against the loopback S3 server. Every S3 document must load exactly as the
same file on local disk does."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipelines.ingest import IngestLimits, load_document
from pipelines.results import source_key
from pipelines.sources import SourceError, list_sources
from tests.pdfgen import lorem_pages, make_pdf
from tests.repogen import make_repo, make_tar_gz
from tests.s3server import client_with_bucket, upload_tree

BUCKET = "sources"


@pytest.fixture
def client(s3):
    return client_with_bucket(s3.url, BUCKET)


def make_corpus(root: Path) -> Path:
    (root / "reports").mkdir(parents=True)
    make_pdf(root / "reports" / "q3.pdf", lorem_pages(2, words_per_page=60), title="Q3")
    (root / "notes.md").write_text("# Notes\n\nShipped the parser.\n")
    make_tar_gz(root / "kv.tar.gz", {"README.md": "# kv\n", "kv.py": "def get(k):\n    return k\n"}, prefix="kv-main/")
    proj = {"README.md": "# proj\n", "src/app.py": "print('app')\n", "src/__init__.py": "", ".gitignore": "build/\n*.log\n"}
    make_repo(root / "proj", proj, git=True)
    (root / "proj" / "build").mkdir()
    (root / "proj" / "build" / "out.txt").write_text("generated, ignored by .gitignore")
    (root / "proj" / "debug.log").write_text("ignored too")
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / ".env.md").write_text("hidden")
    return root


@pytest.fixture
def corpus(tmp_path, client):
    local = make_corpus(tmp_path / "in")
    prefix = f"c-{uuid.uuid4().hex[:8]}/in/"
    upload_tree(client, BUCKET, prefix, local)
    client.put_object(Bucket=BUCKET, Key=prefix + "empty/", Body=b"")  # a console-made "folder"
    return local, f"s3://{BUCKET}/{prefix}"


def test_listing_matches_local_and_accounts_for_every_object(corpus, s3):
    local, uri = corpus
    refs, ignored = list_sources([uri], s3.url)
    local_refs, _ = list_sources([str(local)])
    assert [(r.rel_path, r.kind) for r in refs] == [(r.rel_path, r.kind) for r in local_refs]
    assert [(r.rel_path, r.kind) for r in refs] == [
        ("kv.tar.gz", "archive"), ("notes.md", "text"), ("proj", "repo"), ("reports/q3.pdf", "pdf"),
    ]  # fmt: skip
    proj = next(r for r in refs if r.kind == "repo")
    assert proj.uri == uri + "proj/" and proj.root == uri
    assert all(r.endpoint == s3.url and r.version for r in refs)
    assert {s.path.removeprefix(uri): s.reason for s in ignored} == {
        ".env.md": "hidden file",
        "empty/": "folder marker (an empty object ending in /)",
        "image.png": "unsupported file type",
    }


def test_every_document_loads_as_it_does_from_disk(corpus, s3):
    local, uri = corpus
    refs, _ = list_sources([uri], s3.url)
    local_refs = {r.rel_path: r for r in list_sources([str(local)])[0]}
    for ref in refs:
        remote, here = load_document(ref), load_document(local_refs[ref.rel_path])
        assert remote.status == "ok", (ref.rel_path, remote.reason)
        assert [(u.ref, u.text) for u in remote.units] == [(u.ref, u.text) for u in here.units], ref.rel_path
        assert remote.title == here.title
    proj = load_document(next(r for r in refs if r.kind == "repo"))
    # build/ and *.log ignored by .gitignore; .git never read
    assert [u.ref for u in proj.units] == ["README.md", ".gitignore", "src/__init__.py", "src/app.py"]


def test_change_keys_follow_content_only(corpus, client, s3):
    _, uri = corpus
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    before = {r.rel_path: source_key(r) for r in list_sources([uri], s3.url)[0]}
    client.put_object(Bucket=BUCKET, Key=prefix + "notes.md", Body=b"# Notes\n\nChanged.\n")
    client.put_object(Bucket=BUCKET, Key=prefix + "proj/.git/ORIG_HEAD", Body=b"x")  # git's data: not content
    after = {r.rel_path: source_key(r) for r in list_sources([uri], s3.url)[0]}
    assert {k for k in before if before[k] != after[k]} == {"notes.md"}
    client.put_object(Bucket=BUCKET, Key=prefix + "proj/src/app.py", Body=b"print('changed')\n")
    again = {r.rel_path: source_key(r) for r in list_sources([uri], s3.url)[0]}
    assert {k for k in after if after[k] != again[k]} == {"proj"}


def test_single_objects_and_repository_prefixes(corpus, s3):
    _, uri = corpus
    (one,), _ = list_sources([uri + "reports/q3.pdf"], s3.url)
    assert (one.rel_path, one.root, one.kind) == ("q3.pdf", uri + "reports/", "pdf")
    for given in (uri + "proj", uri + "proj/"):  # the repository's own prefix, with or without the slash
        (repo,), ignored = list_sources([given], s3.url)
        assert (repo.uri, repo.rel_path, repo.root, repo.kind) == (uri + "proj/", "proj", uri, "repo")
        assert ignored == []
    (sub,), _ = list_sources([uri + "reports"], s3.url)  # a plain prefix without its slash
    assert sub.uri == uri + "reports/q3.pdf"
    refs, _ = list_sources([uri, uri + "notes.md"], s3.url)
    assert len(refs) == 4  # named twice, listed once


def test_missing_bucket_or_prefix_is_one_clear_error(s3, client):
    with pytest.raises(SourceError, match="no such S3 object or prefix"):
        list_sources([f"s3://{BUCKET}/nothing-here/"], s3.url)
    with pytest.raises(SourceError, match="cannot list s3://no-such-bucket-x/.*NoSuchBucket"):
        list_sources(["s3://no-such-bucket-x/in/"], s3.url)


def test_unreadable_objects_fail_with_their_reason(corpus, client, s3):
    _, uri = corpus
    refs = {r.rel_path: r for r in list_sources([uri], s3.url)[0]}
    small = IngestLimits(max_source_bytes=100)
    doc = load_document(refs["reports/q3.pdf"], small)
    assert doc.status == "failed" and doc.reason.startswith("too large: ") and "max_source_bytes" in doc.reason
    client.delete_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/") + "notes.md")  # gone since the listing
    doc = load_document(refs["notes.md"])
    assert doc.status == "failed" and doc.reason == "cannot read object: NoSuchKey: The specified key does not exist."


def test_nested_nested_checkouts_are_one_repository(tmp_path, client, s3):
    root = tmp_path / "mono"
    make_repo(root, {"README.md": "# mono\n"}, git=True)
    make_repo(root / "vendor" / "inner", {"x.py": "x = 1\n"}, git=True)
    prefix = f"n-{uuid.uuid4().hex[:8]}/"
    upload_tree(client, BUCKET, prefix, tmp_path)
    (ref,), _ = list_sources([f"s3://{BUCKET}/{prefix}"], s3.url)
    assert (ref.rel_path, ref.kind) == ("mono", "repo")
