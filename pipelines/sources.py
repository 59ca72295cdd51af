"""List the documents under the given sources: one SourceRef per document.

A PDF, a text or Markdown file, a .zip / .tar.gz archive and a git checkout
(a directory holding .git) are each one document. Anything else found in a
folder is listed as ignored with its reason, so nothing goes unaccounted for.

On S3 the same rules hold with prefixes for folders: ``s3://bucket/in/`` is
listed recursively, and a prefix holding ``.git/HEAD`` (a checkout copied
with ``aws s3 sync``) is one repository document.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path

from pipelines.records import Skipped, SourceKind, SourceRef

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".text")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


class SourceError(ValueError):
    """A source given by the user does not exist or cannot be listed."""


def classify(name: str) -> SourceKind | None:
    lower = name.lower()
    if lower.endswith(".pdf"):
        return "pdf"
    if lower.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if lower.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def list_sources(sources: list[str], s3_endpoint_url: str | None = None) -> tuple[list[SourceRef], list[Skipped]]:
    """Refs in a stable order, and what was ignored with why. Raises SourceError
    for a source that does not exist; a bad file inside one is never fatal."""
    refs: list[SourceRef] = []
    ignored: list[Skipped] = []
    seen: set[str] = set()
    for source in sources:
        found, skipped = _list_s3(source, s3_endpoint_url) if source.startswith("s3://") else _list_local(source)
        for ref in found:
            if ref.uri not in seen:  # the same file named twice is one document
                seen.add(ref.uri)
                refs.append(ref)
        ignored += skipped
    return refs, ignored


def _list_local(source: str) -> tuple[list[SourceRef], list[Skipped]]:
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"no such file or directory: {_printable(source)}")
    path = path.resolve()
    if not _utf8(str(path)):
        raise SourceError(f"path is not UTF-8: {_printable(path)} (rename it to read it)")
    if path.is_dir() and not (path / ".git").exists():
        return _walk(path)
    ref = _ref(path, path.parent)
    return ([ref], []) if ref else ([], [Skipped(str(path), "unsupported file type")])


NOT_UTF8 = "file name is not UTF-8 (rename it to read it)"


def _utf8(name: str) -> bool:
    """False for a name with bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: Path | str) -> str:
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _ref(path: Path, root: Path) -> SourceRef | None:
    kind: SourceKind | None = "repo" if path.is_dir() else classify(path.name)
    if kind is None:
        return None
    return SourceRef(uri=str(path), root=str(root), rel_path=path.relative_to(root).as_posix(), kind=kind)


def _walk(root: Path) -> tuple[list[SourceRef], list[Skipped]]:
    refs: list[SourceRef] = []
    ignored: list[Skipped] = []

    def on_error(err: OSError) -> None:
        ignored.append(Skipped(_printable(Path(str(err.filename))), f"cannot list: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        here = Path(dirpath)
        dirnames.sort()
        for d in list(dirnames):
            sub = here / d
            if not _utf8(d):  # every path below it would be unwritable in JSON results and manifests
                dirnames.remove(d)
                ignored.append(Skipped(_printable(sub), NOT_UTF8))
            elif d.startswith("."):
                dirnames.remove(d)
                ignored.append(Skipped(str(sub), "hidden directory"))
            elif (sub / ".git").exists():  # a checkout is one document: do not descend
                dirnames.remove(d)
                refs.append(_ref(sub, root))
            elif sub.is_symlink():
                dirnames.remove(d)
                ignored.append(Skipped(str(sub), "symlinked directory (not followed)"))
        for name in sorted(filenames):
            file = here / name
            if not _utf8(name):
                ignored.append(Skipped(_printable(file), NOT_UTF8))
                continue
            ref = None if name.startswith(".") else _ref(file, root)
            if ref:
                refs.append(ref)
            else:
                ignored.append(Skipped(str(file), "hidden file" if name.startswith(".") else "unsupported file type"))
    refs.sort(key=lambda r: r.rel_path)
    return refs, ignored


# --- S3 ------------------------------------------------------------------------------------

GIT_MARKER = ".git/HEAD"


def _list_s3(source: str, endpoint: str | None) -> tuple[list[SourceRef], list[Skipped]]:
    from botocore.exceptions import BotoCoreError, ClientError

    from pipelines.s3 import error_text, head, iter_objects, shared_client, split_uri

    bucket, key = split_uri(source)
    if not bucket:
        raise SourceError(f"no bucket in S3 URI: {source}")
    client = shared_client(endpoint)
    try:
        if key and not key.endswith("/"):  # one object, or a prefix written without its slash
            single = head(client, bucket, key)
            if single is not None:
                root = key.rpartition("/")[0]
                ref = _s3_ref(bucket, root + "/" if root else "", key, *single, endpoint)
                return ([ref], []) if ref else ([], [Skipped(source, "unsupported file type")])
            key += "/"
        objects = list(iter_objects(client, bucket, key))
    except ClientError as e:
        raise SourceError(f"cannot list {source}: {error_text(e)}") from None
    except BotoCoreError as e:
        raise SourceError(f"cannot list {source}: {e}") from None
    if not objects:
        raise SourceError(f"no such S3 object or prefix: {source}")
    return _group_s3(bucket, key, objects, endpoint)


def _group_s3(bucket: str, prefix: str, objects: list[tuple[str, int, str]], endpoint: str | None):
    """Objects under ``prefix`` → one ref per document: repositories (a ``.git/HEAD`` below
    them) first, the outermost winning, then single files; every other object is ignored with why."""
    rel = {k[len(prefix) :]: (size, etag) for k, size, etag in objects}
    repos = sorted({p.removesuffix(GIT_MARKER).rstrip("/") for p in rel if p == GIT_MARKER or p.endswith("/" + GIT_MARKER)})
    outer: list[str] = []
    for r in repos:  # sorted: a parent comes before its children
        if not any(r == o or r.startswith(o + "/") or o == "" for o in outer):
            outer.append(r)
    if "" in outer:  # the source itself is a repository
        outer = [""]
    trees: dict[str, list[str]] = {r: [] for r in outer}
    refs: list[SourceRef] = []
    ignored: list[Skipped] = []
    for p in sorted(rel):
        owner = next((r for r in outer if r == "" or p.startswith(r + "/")), None)
        if owner is not None:
            tree_path = p[len(owner) + 1 :] if owner else p
            if ".git" not in tree_path.split("/"):
                trees[owner].append(f"{tree_path}\0{rel[p][0]}\0{rel[p][1]}")
            continue
        uri = f"s3://{bucket}/{prefix}{p}"
        if p.endswith("/"):
            ignored.append(Skipped(uri, "folder marker (an empty object ending in /)"))
        elif any(part.startswith(".") for part in p.split("/")):
            ignored.append(Skipped(uri, "hidden file"))
        elif ref := _s3_ref(bucket, prefix, prefix + p, *rel[p], endpoint):
            refs.append(ref)
        else:
            ignored.append(Skipped(uri, "unsupported file type"))
    for r, lines in trees.items():
        # The tree's change key: every file's path, size and ETag (git's own data left out).
        version = "s3tree:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
        if r:
            tree_prefix, root, rel_path = f"{prefix}{r}/", prefix, r
        else:  # the listed prefix itself: its parent is the root, as for a local checkout
            tree_prefix, parent = prefix, posixpath.dirname(prefix.rstrip("/"))
            root, rel_path = (parent + "/" if parent else ""), posixpath.basename(prefix.rstrip("/")) or bucket
        refs.append(SourceRef(f"s3://{bucket}/{tree_prefix}", f"s3://{bucket}/{root}", rel_path, "repo", version, endpoint))
    refs.sort(key=lambda r: r.rel_path)
    return refs, ignored


def _s3_ref(bucket: str, root: str, key: str, size: int, etag: str, endpoint: str | None) -> SourceRef | None:
    kind = classify(key.rpartition("/")[2])
    if kind is None:
        return None
    # ETag + size change whenever the bytes do (multipart ETags are not MD5s, but still change).
    return SourceRef(f"s3://{bucket}/{key}", f"s3://{bucket}/{root}", key[len(root) :], kind, f"etag:{etag}:{size}", endpoint)


def source_size(ref: SourceRef) -> int:
    """A single file's size in bytes (from the listing where it has one); -1 for repositories,
    archives (they expand) and when unknown."""
    if ref.kind in ("repo", "archive"):
        return -1
    if ref.version is not None:  # S3: "etag:<etag>:<size>"
        size = ref.version.rpartition(":")[2]
        return int(size) if size.isdigit() else -1
    try:
        return os.stat(ref.uri).st_size
    except OSError:
        return -1
