"""Repositories packed as .zip / .tar(.gz|.bz2|.xz), read in memory: nothing is extracted to disk.

Member names are normalised and refused when they would land outside the root; a single
top-level directory (GitHub's ``name-main/``) is stripped; work is bounded before reading.
"""

from __future__ import annotations

import contextlib
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import IO, Literal

from pipelines.ingest.ignore import SYMLINK, RepoFailure, check_file_count
from pipelines.ingest.limits import IngestLimits
from pipelines.records import Skipped

UNSAFE_PATH = "unsafe path: escapes the archive root"
UNSAFE_LINK = "unsafe link: target escapes the archive root"
HARDLINK = "hardlink"
ENCRYPTED = "encrypted"
MAX_LINK_TARGET = 4096  # a zip symlink's target is its content; longer is not a path
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
SUFFIXES = (".zip", *TAR_SUFFIXES)
# What can go wrong decoding a damaged archive (gzip/bz2/lzma errors are OSError subclasses).
CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, OSError,
           ValueError)  # fmt: skip

Kind = Literal["file", "dir", "symlink", "hardlink", "other"]
Key = zipfile.ZipInfo | tarfile.TarInfo


class MemberUnreadable(Exception):
    """One member cannot be decoded (unsupported compression); it is skipped, not fatal."""


@dataclass(slots=True)
class Member:
    path: str  # safe posix path relative to the (stripped) root
    size: int  # declared expanded size, known before reading
    key: Key


@dataclass(slots=True)
class Listing:
    files: list[Member] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    gitignores: list[tuple[str, str]] = field(default_factory=list)  # (path, text)


@dataclass(slots=True)
class _Raw:
    name: str | None  # normalised, None when unsafe
    original: str
    kind: Kind
    size: int
    link: str | None
    key: Key


def archive_title(name: str) -> str | None:
    """The archive's name without its suffix, or None for a suffix we do not read."""
    lower = name.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def safe_name(name: str) -> str | None:
    """Normalised posix path, or None for absolute paths, drive letters and ``..`` components."""
    name = name.replace("\\", "/")  # Windows-made zips; a backslash may hide a '..'
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return None if ".." in parts else "/".join(parts)


def resolve_link(link_dir: str, target: str) -> str | None:
    """Where ``target`` (relative to directory ``link_dir``) points, or None if outside the root."""
    target = target.replace("\\", "/")
    if target.startswith("/") or re.match(r"[A-Za-z]:", target):
        return None
    parts = [p for p in link_dir.split("/") if p]
    for p in target.split("/"):
        if p == "..":
            if not parts:
                return None
            parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    return "/".join(parts)


def _top_dir(raws: list[_Raw]) -> str:
    """The single directory wrapping every safe member, or "" when there is none."""
    named = [r for r in raws if r.name]
    tops = {r.name.split("/", 1)[0] for r in named if r.name}
    if len(tops) != 1:
        return ""
    top = tops.pop()
    if any(r.name == top and r.kind != "dir" for r in named):  # a lone top-level file is content
        return ""
    return top if any("/" in (r.name or "") for r in named) else ""


def _inside(target: str | None, top: str) -> bool:
    return target is not None and (not top or target == top or target.startswith(top + "/"))


class Archive:
    """``with Archive(name, file, limits) as a: a.listing(); a.read(member)``; ``name`` gives the type."""

    def __init__(self, name: str, file: IO[bytes], limits: IngestLimits) -> None:
        self.name = name
        self.file = file
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._prefetched: dict[str, bytes] = {}  # tar .gitignore bytes read while streaming

    def __enter__(self) -> Archive:
        try:
            if self.name.lower().endswith(".zip"):
                self._zip = zipfile.ZipFile(self.file)
            else:
                self._tar = tarfile.open(fileobj=self.file, mode="r:*")
        except CORRUPT as e:
            raise RepoFailure(f"corrupt or unreadable archive: {e}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        for f in (self._zip, self._tar):
            if f is not None:
                f.close()

    def _zip_raw(self, zf: zipfile.ZipFile) -> list[_Raw]:
        infos = zf.infolist()
        check_file_count(sum(not i.is_dir() for i in infos), self.limits)
        raws = []
        for i in infos:
            mode = i.external_attr >> 16
            kind: Kind = "dir" if i.is_dir() else "symlink" if stat.S_ISLNK(mode) else "file"
            link = None
            if kind == "symlink":  # the target is the member's content; a huge one is no path
                small = i.file_size <= MAX_LINK_TARGET
                link = zf.read(i).decode("utf-8", "replace") if small else "/"
            raws.append(_Raw(safe_name(i.filename), i.filename, kind, i.file_size, link, i))
        return raws

    def _tar_raw(self, tf: tarfile.TarFile) -> list[_Raw]:
        raws, files, dirs, scanned = [], 0, 0, 0
        for m in tf:  # streaming: a member count or size bomb stops us early
            dirs += m.isdir()
            files += not m.isdir()
            check_file_count(max(files, dirs), self.limits)
            scanned += m.size
            if scanned > (cap := self.limits.max_archive_scan_bytes):
                raise RepoFailure(f"archive declares more than max_archive_scan_bytes={cap}")
            kind: Kind = (
                "file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk() else "other"
            )
            name = safe_name(m.name)
            is_gitignore = kind == "file" and name and name.rpartition("/")[2] == ".gitignore"
            if is_gitignore and m.size <= self.limits.max_file_bytes:  # read now: the stream only goes forward
                self._prefetched[name] = self._tar_bytes(m)
            raws.append(_Raw(name, m.name, kind, m.size, m.linkname or None, m))
        return raws

    def listing(self) -> Listing:
        try:
            raws = self._zip_raw(self._zip) if self._zip else self._tar_raw(self._tar_file())
        except CORRUPT as e:
            raise RepoFailure(f"corrupt archive: {e}") from None
        top = _top_dir(raws)
        strip = len(top) + 1 if top else 0
        out, by_path = Listing(), {}
        for r in raws:
            if r.name is None:
                out.skipped.append(Skipped(r.original, UNSAFE_PATH))
                continue
            if r.kind in ("dir", "other") or not r.name or r.name == top:
                continue
            path = r.name[strip:]
            if ".git" in path.split("/"):  # git's own data is never content
                continue
            if r.kind == "symlink":
                target = resolve_link(r.name.rpartition("/")[0], r.link or "/")
                out.skipped.append(Skipped(path, SYMLINK if _inside(target, top) else UNSAFE_LINK))
            elif r.kind == "hardlink":  # tar hardlink targets are archive-root relative
                target = safe_name(r.link or "/")
                out.skipped.append(Skipped(path, HARDLINK if _inside(target, top) else UNSAFE_LINK))
            elif isinstance(r.key, zipfile.ZipInfo) and r.key.flag_bits & 0x1:
                out.skipped.append(Skipped(path, ENCRYPTED))
            else:
                by_path[path] = Member(path, r.size, r.key)  # a repeated name: the last one wins
        out.files = list(by_path.values())
        for m in out.files:
            if m.path.rpartition("/")[2] == ".gitignore" and m.size <= self.limits.max_file_bytes:
                # an unreadable .gitignore ignores nothing; it is skipped later
                with contextlib.suppress(MemberUnreadable):
                    out.gitignores.append((m.path, self.read(m).decode("utf-8", "replace")))
        return out

    def _tar_file(self) -> tarfile.TarFile:
        assert self._tar is not None, "use Archive as a context manager"
        return self._tar

    def _tar_bytes(self, info: tarfile.TarInfo) -> bytes:
        f = self._tar_file().extractfile(info)
        return f.read() if f is not None else b""

    def read(self, m: Member) -> bytes:
        """The member's bytes (at most its declared size)."""
        try:
            if isinstance(m.key, zipfile.ZipInfo):
                with self._zip.open(m.key) as f:  # type: ignore[union-attr]
                    return f.read()
            name = safe_name(m.key.name) or ""
            if name in self._prefetched:
                return self._prefetched[name]
            return self._tar_bytes(m.key)
        except (NotImplementedError, RuntimeError) as e:  # unsupported compression, encryption
            raise MemberUnreadable(f"unreadable: {e}") from None
        except CORRUPT as e:
            raise RepoFailure(f"corrupt archive: {m.path}: {e}") from None
