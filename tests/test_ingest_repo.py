"""Repositories as one document: git's ignore rules, skip rules, order, safe archives, limits."""

from __future__ import annotations

import os
import random
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from pipelines.ingest.ignore import classify, filter_ignored
from pipelines.ingest.limits import IngestLimits
from pipelines.ingest.repo import load_repo
from pipelines.records import Document, SourceRef
from tests.repogen import make_repo, make_tar_gz, make_zip, run_git, synth_repo_files


def _ref(path: Path, kind: str) -> SourceRef:
    return SourceRef(str(path), str(path.parent), path.name, kind)  # type: ignore[arg-type]


def _load(path: Path, limits: IngestLimits = IngestLimits()) -> Document:
    kind = "repo" if path.is_dir() else "archive"
    return load_repo(_ref(path, kind), limits)


def _reasons(doc: Document) -> dict[str, str]:
    return {s.path: s.reason for s in doc.skipped}


# --- (a) gitignore semantics against git itself ------------------------------------------------

IGNORE_FIXTURE: dict[str, str] = {
    ".gitignore": "\n".join(
        [
            "# comment",
            "*.log",
            "!keep.log",
            "/out",  # anchored: only the top-level out
            "logs/",  # directories only
            "tmp",
            "!tmp/important.txt",  # cannot re-include: tmp/ itself is excluded
            "docs/*.txt",
            "!docs/keep.txt",
            "**/cache/",
            "secret[0-9].cfg",
            r"\#hash.txt",
            "/a/deep/",
            "trailing.txt   ",
            "src/**/gen_*.py",
        ]
    ),
    "pkg/.gitignore": "*.dat\n!important.log\n/local.txt\nout\n",
    "pkg/sub/.gitignore": "!*.dat\n",
    "tmp/.gitignore": "!*\n",  # inside an excluded dir: git never reads it
    "README.md": "# fixture\n",
    "main.py": "print(1)\n",
    "out/x.py": "x\n",
    "src/out/x.py": "x\n",
    "src/a/b/gen_x.py": "x\n",
    "src/gen_y.py": "x\n",
    "src/keep_y.py": "x\n",
    "pkg/out/y.py": "y\n",
    "pkg/local.txt": "l\n",
    "pkg/sub/local.txt": "l\n",
    "pkg/important.log": "i\n",
    "pkg/d.dat": "d\n",
    "pkg/sub/e.dat": "e\n",
    "logs/a.txt": "a\n",
    "x/logs/b.txt": "b\n",
    "src/logs": "a file named logs is not a directory\n",
    "tmp/important.txt": "t\n",
    "tmp/other.txt": "t\n",
    "a/b.log": "b\n",
    "a/keep.log": "k\n",
    "docs/a.txt": "a\n",
    "docs/keep.txt": "k\n",
    "docs/sub/a.txt": "a\n",
    "x/cache/c.py": "c\n",
    "cache": "a file named cache\n",
    "secret1.cfg": "s\n",
    "secretA.cfg": "s\n",
    "#hash.txt": "h\n",
    "a/deep/f.py": "f\n",
    "b/a/deep/f.py": "f\n",
    "trailing.txt": "t\n",
}


def _git_listing(root: Path) -> set[str]:
    out = run_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return {p for p in out.decode().split("\0") if p}


def test_gitignore_matches_git(tmp_path: Path) -> None:
    plain = make_repo(tmp_path / "plain", IGNORE_FIXTURE)
    checkout = make_repo(tmp_path / "checkout", IGNORE_FIXTURE, git=True)
    expected = _git_listing(checkout)
    # a sanity check on the fixture itself, so the comparison below means something
    assert {"src/out/x.py", "pkg/sub/e.dat", "a/keep.log", "docs/keep.txt"} <= expected
    assert not {"tmp/important.txt", "logs/a.txt", "pkg/d.dat", "out/x.py", "#hash.txt"} & expected

    # the pure helper, given every .gitignore and every path
    gitignores = [(p, t) for p, t in IGNORE_FIXTURE.items() if p.endswith(".gitignore")]
    assert set(filter_ignored(gitignores, IGNORE_FIXTURE)) == expected

    # the walk without git, and git's own listing through load_repo
    plain_doc, git_doc = _load(plain), _load(checkout)
    assert plain_doc.status == git_doc.status == "ok"
    assert (plain_doc.meta["file_list"], git_doc.meta["file_list"]) == ("gitignore", "git ls-files")
    assert {u.ref for u in plain_doc.units} == expected
    assert {u.ref for u in git_doc.units} == expected
    assert plain_doc.skipped == git_doc.skipped == []

    # an untracked, unignored file shows up too (--others); an untracked ignored one does not
    (checkout / "new.py").write_text("n\n")
    (checkout / "new.log").write_text("n\n")
    refs = {u.ref for u in _load(checkout).units}
    assert "new.py" in refs and "new.log" not in refs


def test_gitignore_in_archive(tmp_path: Path) -> None:
    expected = _git_listing(make_repo(tmp_path / "checkout", IGNORE_FIXTURE, git=True))
    doc = _load(make_tar_gz(tmp_path / "fixture.tar.gz", IGNORE_FIXTURE, prefix="fixture-main/"))
    assert doc.status == "ok" and {u.ref for u in doc.units} == expected


_FUZZ_NAMES = ("a", "b", "d1", "d2")
_FUZZ_PATTERNS = (
    "a", "/a", "a/", "/a/", "*.log", "!*.log", "!x.py", "d1/", "!d1/", "d1/*", "!d1/x.py", "**/b",
    "b/**", "!b", "*.py", "!/a", "b/x.py", "/d2/z.txt", "!z.txt", "a/**/x.py", "?.py", "[xy].*",
    "d*/", "!d2", "**", "!**/", "*/x.py", "d1/d2/", "!d1/d2", "a/b", "/*", "!/*/", "*", "!*/",
    "x.py/", "d1/**/", "**/d2/", "*/", "**/*/**", "d1/**", "!d1/**/",
)  # fmt: skip


def test_gitignore_fuzz_matches_git(tmp_path: Path) -> None:
    """Random trees and .gitignore files: our matcher and our walk agree with git every time."""
    for trial in range(150):
        rng = random.Random(trial)
        files: dict[str, str | bytes] = {}
        for _ in range(rng.randint(5, 20)):
            dirs = [rng.choice(_FUZZ_NAMES) for _ in range(rng.randint(0, 3))]
            files["/".join([*dirs, rng.choice(("x.py", "y.log", "z.txt"))])] = "x\n"
        dirs = sorted({""} | {p.rpartition("/")[0] for p in files})
        for d in rng.sample(dirs, k=min(len(dirs), rng.randint(1, 3))):
            lines = [rng.choice(_FUZZ_PATTERNS) for _ in range(rng.randint(1, 5))]
            files[f"{d}/.gitignore" if d else ".gitignore"] = "\n".join(lines) + "\n"
        prefixes = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        files = {p: t for p, t in files.items() if p not in prefixes}  # a path is a file or a dir
        root = make_repo(tmp_path / str(trial), files)
        run_git(root, "init", "-q")
        expected = _git_listing(root)
        gitignores = [(p, str(t)) for p, t in files.items() if p.endswith(".gitignore")]
        assert set(filter_ignored(gitignores, files)) == expected, (trial, gitignores)
        shutil.rmtree(root / ".git")
        assert {u.ref for u in _load(root).units} == expected, (trial, gitignores)


def test_git_failure_falls_back_to_walk(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "broken", {".gitignore": "*.log\n", "a.py": "a\n", "b.log": "b\n"})
    (root / ".git").write_text("gitdir: /nonexistent\n")  # git refuses; the walk takes over
    doc = _load(root)
    assert doc.meta["file_list"] == "gitignore"
    assert [u.ref for u in doc.units] == [".gitignore", "a.py"]


# --- (b) skip reasons ----------------------------------------------------------------------------


def test_skip_reasons(tmp_path: Path) -> None:
    limits = IngestLimits(max_file_bytes=2_000, max_line_chars=200)
    files: dict[str, str | bytes] = {
        "ok.py": "x = 1\n",
        "package-lock.json": "{}\n",
        "sub/poetry.lock": "x\n",
        "node_modules/left-pad/index.js": "module.exports = 1\n",
        "web/node_modules/a.js": "a\n",
        "app.min.js": "var a=1;\n",
        "app.js.map": "{}\n",
        "bundle.js": "a" * 1_500,  # one long line: minified
        "nul.bin": b"abc\x00def",
        "latin1.txt": "caf\xe9\n".encode("latin-1"),
        "big.py": "x = 1\n" * 500,  # 3000 bytes
    }
    for git in (False, True):
        doc = _load(make_repo(tmp_path / f"r{git}", files, git=git), limits)
        assert doc.status == "ok"
        assert [u.ref for u in doc.units] == ["ok.py"]
        assert _reasons(doc) == {
            "package-lock.json": "lockfile",
            "sub/poetry.lock": "lockfile",
            "node_modules/": "vendored or generated directory",
            "web/node_modules/": "vendored or generated directory",
            "app.min.js": "minified or source map",
            "app.js.map": "minified or source map",
            "bundle.js": "minified or source map",
            "nul.bin": "binary",
            "latin1.txt": "binary (not UTF-8)",
            "big.py": "too large: 3000 bytes > max_file_bytes=2000",
        }
        assert doc.meta["file_count"] == 1 and doc.meta["skipped_count"] == 10


def test_classify_is_pure() -> None:
    limits = IngestLimits(max_line_chars=10)
    assert classify("a.py", b"\xef\xbb\xbfx = 1\n", limits) == ("x = 1\n", None)  # BOM dropped
    assert classify("a.py", b"", limits) == ("", None)
    assert classify("yarn.lock", b"x", limits) == (None, "lockfile")
    assert classify("dist/a.py", b"x", limits) == (None, "vendored or generated directory")
    # A generic name is generated only at the root; deeper it is source, a _vendor folder is vendored anywhere.
    assert classify("src/pip/_internal/operations/build/wheel.py", b"x", limits) == ("x", None)
    assert classify("src/pip/_vendor/rich/a.py", b"x", limits) == (None, "vendored or generated directory")
    assert classify("a.py", b"x" * 11, limits) == (None, "minified or source map")
    assert classify("a.py", b"x" * 5 + b"\n" + b"y" * 5, limits)[1] is None


def test_symlinks_skipped(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "a\n", "d/b.py": "b\n"})
    os.symlink("/etc/passwd", root / "evil")
    os.symlink("d", root / "dlink")
    doc = _load(root)
    assert [u.ref for u in doc.units] == ["a.py", "d/b.py"]
    assert _reasons(doc) == {"evil": "symlink", "dlink": "symlink"}


# --- (c) order ------------------------------------------------------------------------------------


def test_readme_first_then_sorted(tmp_path: Path) -> None:
    files = {
        "b.py": "b\n", "A.py": "A\n", "a/z.py": "z\n", "README.rst": "r\n", "readme.txt": "r\n",
        "docs/README.md": "nested readmes are ordinary\n", "_x.py": "x\n", "Z/a.py": "a\n",
    }  # fmt: skip
    doc = _load(make_repo(tmp_path / "r", files))
    assert doc.title == "r"
    assert [u.ref for u in doc.units] == [
        "README.rst", "readme.txt", "A.py", "Z/a.py", "_x.py", "a/z.py", "b.py", "docs/README.md",
    ]  # fmt: skip


# --- (d) archives ---------------------------------------------------------------------------------


def test_zip_unsafe_members_refused(tmp_path: Path) -> None:
    files = {"README.md": "hi\n", "src/a.py": "a\n", "../evil.py": "x\n", "/abs.py": "x\n",
             "C:/win.py": "x\n", "src/../../up.py": "x\n"}  # fmt: skip
    doc = _load(make_zip(tmp_path / "proj.zip", files, symlinks={"src/link": "../../etc/passwd"}))
    assert doc.status == "ok" and doc.title == "proj"
    assert [u.ref for u in doc.units] == ["README.md", "src/a.py"]
    reasons = _reasons(doc)
    for bad in ("../evil.py", "/abs.py", "C:/win.py", "src/../../up.py"):
        assert reasons[bad] == "unsafe path: escapes the archive root"
    assert reasons["src/link"].startswith("unsafe link")


def test_tar_links_refused_and_prefix_stripped(tmp_path: Path) -> None:
    path = make_tar_gz(
        tmp_path / "proj-main.tar.gz",
        {"README.md": "hi\n", "pkg/a.py": "a\n", "../evil.py": "x\n"},
        prefix="proj-main/",
        symlinks={"pkg/passwd": "../../etc/passwd", "abs": "/etc/passwd", "pkg/ok": "a.py"},
        hardlinks={"hard": "/etc/shadow", "hard2": "../outside", "hard3": "proj-main/pkg/a.py"},
    )
    doc = _load(path)
    assert doc.status == "ok" and doc.title == "proj-main"
    assert [u.ref for u in doc.units] == ["README.md", "pkg/a.py"]
    reasons = _reasons(doc)
    assert reasons["proj-main/../evil.py"] == "unsafe path: escapes the archive root"
    for bad in ("pkg/passwd", "abs", "hard", "hard2"):
        assert reasons[bad].startswith("unsafe link"), bad
    assert reasons["pkg/ok"] == "symlink" and reasons["hard3"] == "hardlink"


def test_github_style_prefix_stripped_in_zip(tmp_path: Path) -> None:
    files = {"README.md": "r\n", "a/b.py": "b\n"}
    doc = _load(make_zip(tmp_path / "r.zip", files, prefix="r-main/"))
    assert [u.ref for u in doc.units] == ["README.md", "a/b.py"]
    # a single top-level file is content, not a wrapper
    doc = _load(make_zip(tmp_path / "one.zip", {"only.py": "o\n"}))
    assert [u.ref for u in doc.units] == ["only.py"]
    # one top-level directory among no other content is still a wrapper; two are not
    doc = _load(make_tar_gz(tmp_path / "two.tgz", {"x/a.py": "a\n", "y/b.py": "b\n"}))
    assert doc.title == "two" and [u.ref for u in doc.units] == ["x/a.py", "y/b.py"]


def test_archive_skip_rules_apply(tmp_path: Path) -> None:
    files = {"a.py": "a\n", "vendor/x.go": "x\n", "yarn.lock": "y\n", ".git/config": "c\n",
             "bin.dat": b"\x00\x01", ".gitignore": "*.tmp\n", "junk.tmp": "j\n"}  # fmt: skip
    doc = _load(make_zip(tmp_path / "s.zip", files, prefix="s-1.0/"))
    assert [u.ref for u in doc.units] == [".gitignore", "a.py"]
    assert _reasons(doc) == {"vendor/": "vendored or generated directory", "yarn.lock": "lockfile",
                             "bin.dat": "binary"}  # fmt: skip


def test_generic_names_are_generated_only_at_the_root(tmp_path: Path) -> None:
    # pip's layout: a real source package named build/, and a _vendor/ that really is vendored.
    files = {"build/lib/x.py": "x\n", "src/pip/_internal/operations/build/wheel.py": "w\n",
             "src/pip/_vendor/rich/a.py": "r\n", "src/pip/main.py": "m\n"}  # fmt: skip
    for git in (False, True):
        doc = _load(make_repo(tmp_path / f"pip{git}", files, git=git))
        assert [u.ref for u in doc.units] == ["src/pip/_internal/operations/build/wheel.py", "src/pip/main.py"]
        assert _reasons(doc) == dict.fromkeys(["build/", "src/pip/_vendor/"], "vendored or generated directory")


# --- (e) corrupt ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad.zip", "bad.tar.gz", "bad.tgz"])
def test_corrupt_archive_fails(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is not an archive" * 10)
    doc = _load(path)
    assert doc.status == "failed" and doc.units == []
    assert "corrupt" in (doc.reason or "") and "\n" not in (doc.reason or "")


def test_truncated_archives_fail(tmp_path: Path) -> None:
    body = {f"f{i}.py": os.urandom(3000).hex() + "\n" for i in range(20)}
    for path in (make_zip(tmp_path / "t.zip", body), make_tar_gz(tmp_path / "t.tar.gz", body)):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        doc = _load(path)
        assert doc.status == "failed" and "corrupt" in (doc.reason or ""), (path, doc.reason)


def test_bad_inputs_fail_not_raise(tmp_path: Path) -> None:
    assert _load(tmp_path / "missing.zip").status == "failed"
    nodir = tmp_path / "nodir"
    assert load_repo(_ref(nodir, "repo")).reason == f"not a directory: {nodir}"
    (tmp_path / "x.rar").write_bytes(b"x")
    assert "unsupported archive type" in (_load(tmp_path / "x.rar").reason or "")


# --- (f) limits -----------------------------------------------------------------------------------


def test_member_count_limit(tmp_path: Path) -> None:
    files = {f"m{i}.py": "x\n" for i in range(11)}
    limits = IngestLimits(max_repo_files=10)
    for path in (
        make_zip(tmp_path / "many.zip", files),
        make_tar_gz(tmp_path / "many.tar.gz", files),
        make_repo(tmp_path / "many", files),
        make_repo(tmp_path / "many-git", files, git=True),
    ):
        doc = _load(path, limits)
        assert doc.status == "failed" and "max_repo_files=10" in (doc.reason or ""), path
    files.pop("m0.py")
    assert _load(make_zip(tmp_path / "ten.zip", files), limits).status == "ok"


def test_expanded_bytes_limit(tmp_path: Path) -> None:
    files = {f"m{i}.py": "x = 1\n" * 200 for i in range(5)}  # 5 x 1200 bytes, compresses well
    limits = IngestLimits(max_archive_bytes=5_000)
    for path in (make_zip(tmp_path / "big.zip", files), make_tar_gz(tmp_path / "big.tgz", files)):
        doc = _load(path, limits)
        assert doc.status == "failed" and "max_archive_bytes=5000" in (doc.reason or ""), path
    # skipped members do not count toward the expanded size
    files = {**{f"m{i}.py": "x\n" for i in range(3)}, "yarn.lock": "y" * 10_000}
    assert _load(make_zip(tmp_path / "ok.zip", files), limits).status == "ok"


def test_tar_scan_limit(tmp_path: Path) -> None:
    files = {"a.py": "a\n", "huge.bin": b"\0" * 100_000}  # skipped, but we still walk past it
    doc = _load(make_tar_gz(tmp_path / "z.tgz", files), IngestLimits(max_archive_scan_bytes=50_000))
    assert doc.status == "failed" and "max_archive_scan_bytes=50000" in (doc.reason or "")


# --- (g) nothing written to disk ------------------------------------------------------------------


def test_archive_read_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zpath = make_zip(tmp_path / "m.zip", {"a.py": "a\n"}, prefix="m/")
    tpath = make_tar_gz(tmp_path / "m.tgz", {"a.py": "a\n"}, prefix="m/")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))

    def no_extract(*a: object, **k: object) -> None:
        raise AssertionError("archives must not be extracted")

    for cls, names in ((zipfile.ZipFile, ("extract", "extractall")),
                       (tarfile.TarFile, ("extract", "extractall", "makefile"))):  # fmt: skip
        for n in names:
            monkeypatch.setattr(cls, n, no_extract)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for path in (zpath, tpath):
        doc = _load(path)
        assert doc.status == "ok" and [u.ref for u in doc.units] == ["a.py"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert list(scratch.iterdir()) == []


# --- generators -----------------------------------------------------------------------------------


def test_synth_repo_is_deterministic_and_loads(tmp_path: Path) -> None:
    files = synth_repo_files(40, 60, seed=3)
    assert files == synth_repo_files(40, 60, seed=3) and files != synth_repo_files(40, 60, seed=4)
    assert len(files) == 40 and all(v.count("\n") == 60 for v in files.values())
    for text in files.values():
        compile(text, "<synth>", "exec")
    doc = _load(make_repo(tmp_path / "synth", files, git=True))
    assert doc.status == "ok" and [u.ref for u in doc.units] == sorted(files)
