"""List the documents under the given sources: one SourceRef per document.

A PDF, a text or Markdown file, a .zip / .tar.gz archive and a git checkout
(a directory holding .git) are each one document. Anything else found in a
folder is listed as ignored with its reason, so nothing goes unaccounted for.
"""

from __future__ import annotations

import os
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


def list_sources(sources: list[str]) -> tuple[list[SourceRef], list[Skipped]]:
    """Refs in a stable order, and what was ignored with why. Raises SourceError
    for a source that does not exist; a bad file inside one is never fatal."""
    refs: list[SourceRef] = []
    ignored: list[Skipped] = []
    seen: set[str] = set()
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise SourceError(f"no such file or directory: {source}")
        path = path.resolve()
        if path.is_dir() and not (path / ".git").exists():
            found, skipped = _walk(path)
        else:
            ref = _ref(path, path.parent)
            found, skipped = ([ref], []) if ref else ([], [Skipped(str(path), "unsupported file type")])
        for ref in found:
            if ref.uri not in seen:  # the same file named twice is one document
                seen.add(ref.uri)
                refs.append(ref)
        ignored += skipped
    return refs, ignored


def _ref(path: Path, root: Path) -> SourceRef | None:
    kind: SourceKind | None = "repo" if path.is_dir() else classify(path.name)
    if kind is None:
        return None
    return SourceRef(uri=str(path), root=str(root), rel_path=path.relative_to(root).as_posix(), kind=kind)


def _walk(root: Path) -> tuple[list[SourceRef], list[Skipped]]:
    refs: list[SourceRef] = []
    ignored: list[Skipped] = []

    def on_error(err: OSError) -> None:
        ignored.append(Skipped(str(err.filename), f"cannot list: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        here = Path(dirpath)
        dirnames.sort()
        for d in list(dirnames):
            sub = here / d
            if d.startswith("."):
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
            ref = None if name.startswith(".") else _ref(file, root)
            if ref:
                refs.append(ref)
            else:
                ignored.append(Skipped(str(file), "hidden file" if name.startswith(".") else "unsupported file type"))
    refs.sort(key=lambda r: r.rel_path)
    return refs, ignored
