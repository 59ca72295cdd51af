"""A code repository (directory, git checkout or archive) becomes ONE document of file units."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.ingest.archive import Archive, MemberUnreadable, archive_title
from pipelines.ingest.fetch import SourceUnreadable, open_source
from pipelines.ingest.ignore import (
    SYMLINK,
    VENDORED,
    GitIgnore,
    RepoFailure,
    check_file_count,
    check_total_bytes,
    decode_file,
    filter_ignored,
    is_vendored_dir,
    path_skip_reason,
    readme_first_key,
    size_skip_reason,
    vendored_dir,
)
from pipelines.ingest.limits import IngestLimits
from pipelines.records import Document, Skipped, SourceRef, Unit

GIT_TIMEOUT_S = 300
SUBMODULE = "submodule"


@dataclass(slots=True)
class _Candidate:
    path: str  # posix, relative to the repository root
    size: int  # known before reading, so limits bite before any I/O
    key: Any  # what the lister's reader needs


def load_repo(ref: SourceRef, limits: IngestLimits = IngestLimits()) -> Document:
    """Read a repository into one Document; bad input gives a failed Document, never raises."""
    try:
        if ref.kind == "repo":
            return _load_s3_tree(ref, limits) if ref.uri.startswith("s3://") else _load_dir(ref, limits)
        if ref.kind == "archive":
            return _load_archive(ref, limits)
        return Document.failed(ref, "repo", f"not a repository source: kind={ref.kind!r}")
    except RepoFailure as e:
        return Document.failed(ref, "repo", _one_line(str(e)))
    except MemoryError:  # the sandbox names parse_memory_bytes for it
        raise
    except Exception as e:  # noqa: BLE001 - one bad input must not take the batch down
        return Document.failed(ref, "repo", _one_line(f"unreadable: {type(e).__name__}: {e}"))


def _one_line(s: str) -> str:
    return " ".join(s.split())[:500]


# --- directories ---------------------------------------------------------------------------


def _load_dir(ref: SourceRef, limits: IngestLimits) -> Document:
    root = Path(ref.uri)
    if not root.is_dir():
        return Document.failed(ref, "repo", f"not a directory: {ref.uri}")
    listed = _git_files(root) if (root / ".git").exists() else None
    if listed is not None:
        cands, skipped = _stat_listed(root, listed)
        how = "git ls-files"
    else:
        cands, skipped = _walk(root, limits)
        how = "gitignore"
    title = os.path.basename(os.path.abspath(root))
    return _assemble(ref, title, cands, _read_file, skipped, limits, how)


def _git_files(root: Path) -> list[str] | None:
    """git's own listing (tracked + untracked-not-ignored), or None if git cannot give it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # no redirected repo
    cmd = ["git", "-C", str(root), "-c", "core.fsmonitor=false", "-c", "core.quotepath=off",
           "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=GIT_TIMEOUT_S, env=env)
    except (OSError, subprocess.SubprocessError):  # no git, not a repo, dubious ownership...
        return None
    paths = out.stdout.decode("utf-8", "surrogateescape").split("\0")
    return list(dict.fromkeys(p for p in paths if p))  # a conflicted path is listed once per stage


def _stat_listed(root: Path, paths: list[str]) -> tuple[list[_Candidate], list[Skipped]]:
    cands, skipped = [], []
    for p in paths:
        if vendored_dir(p):  # collapsed to one entry later; no need to stat them
            cands.append(_Candidate(p, 0, None))
            continue
        try:
            st = os.lstat(root / p)
        except OSError:  # in the index but deleted from the working tree
            continue
        if stat.S_ISLNK(st.st_mode):
            skipped.append(Skipped(p, SYMLINK))
        elif stat.S_ISDIR(st.st_mode):  # a gitlink
            skipped.append(Skipped(p, SUBMODULE))
        elif stat.S_ISREG(st.st_mode):
            cands.append(_Candidate(p, st.st_size, root / p))
    return cands, skipped


def _walk(root: Path, limits: IngestLimits) -> tuple[list[_Candidate], list[Skipped]]:
    """Walk without git: .gitignore rules as git applies them; ignored/vendored dirs not entered."""
    rules, cands, skipped = GitIgnore(), [], []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        here = root / rel_dir
        gi = here / ".gitignore"
        if gi.is_file() and not gi.is_symlink() and gi.stat().st_size <= limits.max_file_bytes:
            rules.add(rel_dir, gi.read_bytes().decode("utf-8", "replace"))
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as e:
            if not rel_dir:
                raise RepoFailure(f"unreadable directory: {e}") from None
            skipped.append(Skipped(rel_dir + "/", f"unreadable: {e.strerror or e}"))
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            is_dir = e.is_dir(follow_symlinks=False)
            if e.name == ".git" or rules.matches(rel, is_dir):  # ancestors were checked on entry
                continue
            if e.is_symlink():
                skipped.append(Skipped(rel, SYMLINK))
            elif is_dir and is_vendored_dir(e.name, top=not rel_dir):
                skipped.append(Skipped(rel + "/", VENDORED))
            elif is_dir:
                stack.append(rel)
            elif e.is_file(follow_symlinks=False):
                cands.append(_Candidate(rel, e.stat(follow_symlinks=False).st_size, root / rel))
                check_file_count(len(cands), limits)  # stop walking a huge tree early
    return cands, skipped


def _read_file(c: _Candidate, limits: IngestLimits) -> bytes:
    # O_NOFOLLOW: a file swapped for a symlink since the listing is not followed
    fd = os.open(c.key, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as f:
        return f.read(limits.max_file_bytes + 1)  # grown since stat: still too large


# --- archives ------------------------------------------------------------------------------


def _load_archive(ref: SourceRef, limits: IngestLimits) -> Document:
    name = ref.uri.rpartition("/")[2]
    title = archive_title(name)
    if title is None:
        return Document.failed(ref, "repo", f"unsupported archive type: {name}")
    try:
        source = open_source(ref, limits.max_source_bytes, "max_source_bytes")
        with source as f, Archive(name, f, limits) as arc:
            listing = arc.listing()
            kept = set(filter_ignored(listing.gitignores, (m.path for m in listing.files)))
            cands = [_Candidate(m.path, m.size, m) for m in listing.files if m.path in kept]
            read = lambda c, _: arc.read(c.key)  # noqa: E731
            return _assemble(ref, title, cands, read, listing.skipped, limits, "archive")
    except SourceUnreadable as e:
        return Document.failed(ref, "repo", str(e))


# --- repository trees on S3 ----------------------------------------------------------------


def _load_s3_tree(ref: SourceRef, limits: IngestLimits) -> Document:
    """A prefix holding a repository's files: listed, .gitignore rules applied, each kept file
    fetched on its own (a ranged GET of at most max_file_bytes + 1)."""
    from botocore.exceptions import ClientError

    from pipelines.s3 import error_text, iter_objects, read_prefix, shared_client, split_uri

    client = shared_client(ref.endpoint)
    bucket, prefix = split_uri(ref.uri)
    files: dict[str, _Candidate] = {}
    for key, size, _ in iter_objects(client, bucket, prefix):
        path = key[len(prefix) :]
        if path and not path.endswith("/") and ".git" not in path.split("/"):  # folder markers and git's data
            files[path] = _Candidate(path, size, key)
            check_file_count(len(files), limits)

    def read(c: _Candidate, lim: IngestLimits) -> bytes:
        if c.size == 0:  # a ranged GET of an empty object is an error (416), and there is nothing to read
            return b""
        try:
            return read_prefix(client, bucket, c.key, lim.max_file_bytes + 1)
        except ClientError as e:  # e.g. deleted since the listing: skip the file, keep the repository
            raise OSError(error_text(e)) from None

    gitignores = [
        (p, read(c, limits).decode("utf-8", "replace"))
        for p, c in files.items()
        if p.rpartition("/")[2] == ".gitignore" and c.size <= limits.max_file_bytes
    ]
    cands = [files[p] for p in filter_ignored(gitignores, files)]
    title = prefix.rstrip("/").rpartition("/")[2] or bucket
    return _assemble(ref, title, cands, read, [], limits, "gitignore")


# --- shared --------------------------------------------------------------------------------


def _assemble(
    ref: SourceRef,
    title: str,
    cands: list[_Candidate],
    read: Callable[[_Candidate, IngestLimits], bytes],
    skipped: list[Skipped],
    limits: IngestLimits,
    how: str,
) -> Document:
    """Apply the skip rules and limits, read what is kept (in lister order), order the units."""
    vendored: set[str] = set()
    rest: list[_Candidate] = []
    for c in cands:
        if (d := vendored_dir(c.path)) is not None:
            if d not in vendored:  # one entry per vendored tree, not one per file
                vendored.add(d)
                skipped.append(Skipped(d, VENDORED))
        else:
            rest.append(c)
    check_file_count(len(rest), limits)
    kept: list[_Candidate] = []
    for c in rest:
        reason = path_skip_reason(c.path) or size_skip_reason(c.size, limits)
        if reason:
            skipped.append(Skipped(c.path, reason))
        else:
            kept.append(c)
    check_total_bytes(sum(c.size for c in kept), limits)
    units: list[Unit] = []
    total = 0
    for c in kept:
        try:
            data = read(c, limits)
        except MemberUnreadable as e:
            skipped.append(Skipped(c.path, str(e)))
            continue
        except OSError as e:
            skipped.append(Skipped(c.path, f"unreadable: {e.strerror or e}"))
            continue
        text, reason = decode_file(data, limits)
        reason = size_skip_reason(len(data), limits) or reason
        if reason or text is None:
            skipped.append(Skipped(c.path, reason or "unreadable"))
        else:
            total += len(text)
            if total > limits.max_document_chars:
                raise RepoFailure(f"too much text: more than max_document_chars={limits.max_document_chars} by {c.path}")
            units.append(Unit(ref=c.path, text=text))
    units.sort(key=lambda u: readme_first_key(str(u.ref)))
    for s in skipped:  # undecodable names arrive surrogate-escaped; rows must be valid UTF-8
        s.path = s.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    skipped.sort(key=lambda s: s.path)
    meta = {"file_count": len(units), "skipped_count": len(skipped), "file_list": how}
    return Document.from_ref(ref, "repo", title=title, units=units, skipped=skipped, meta=meta)
