"""Where results go: a local directory, or S3 (``pipelines/s3.py``) behind the same methods.

Writes are atomic: a reader sees the whole object or none of it. Keys are
posix paths relative to the output root. A conditional write (``write_if``)
is a compare-and-swap on a version token; the run's lease
(``pipelines/lease.py``) is built on it. Nothing is ever deleted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

TEMP_SUFFIX = ".longctx-tmp"


class StorageError(ValueError):
    """An output location that cannot be used (a malformed s3:// URI, ...)."""


class OutputError(RuntimeError):
    """A read or write of the output that failed (past the store's own retries); one line naming the object."""


class Storage(Protocol):
    def uri(self, key: str) -> str: ...

    def read_json(self, key: str) -> Any | None:
        """The stored object; None when there is none (or it is not JSON: then it is redone).
        OutputError when it cannot be read (permissions, I/O, a store that keeps failing)."""

    def write_json(self, key: str, obj: Any) -> None:
        """Atomic; OutputError when it fails."""

    def read_bytes(self, key: str) -> bytes | None:
        """The stored object's bytes; None when there is none; OutputError as read_json."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomic; OutputError when it fails."""

    def write_lines(self, key: str, objs: Iterable[Any]) -> None:
        """JSON Lines, one object per line, streamed through a temporary file (never whole in
        memory); atomic; OutputError when it fails."""

    def read_versioned(self, key: str) -> tuple[Any, str] | None:
        """The stored object and its version token, or None."""

    def write_if(self, key: str, obj: Any, version: str | None) -> str | None:
        """Write only if the object is still at ``version`` (None: only if there is none);
        the new version, or None when the condition failed."""

    def versions(self, prefix: str) -> dict[str, str]:
        """The version token of every JSON object under ``prefix``, by key, from one listing
        (S3: ETags; local: inode, size and modification time, which every rewrite changes)."""

    def remove_temporaries(self) -> int: ...


def to_json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode()


def json_lines(objs: Iterable[Any], f: IO[bytes]) -> None:
    for obj in objs:
        f.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def open_storage(location: str, s3_endpoint_url: str | None = None) -> Storage:
    """``s3://bucket/prefix`` (on AWS, or the S3-compatible store at ``s3_endpoint_url`` /
    AWS_ENDPOINT_URL), else a local directory."""
    if location.startswith("s3://"):
        from pipelines.s3 import S3Storage  # boto3 only when asked for

        return S3Storage(location, endpoint_url=s3_endpoint_url)
    return LocalStorage(location)


class LocalStorage:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        # Checked now, not at the first write after the whole inference.
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"output {root} is a file, not a folder")

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def read_json(self, key: str) -> Any | None:
        data = self._read(key)
        try:
            return None if data is None else json.loads(data)
        except ValueError:
            return None

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, to_json(obj))

    def read_bytes(self, key: str) -> bytes | None:
        return self._read(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda f: f.write(data))

    def write_lines(self, key: str, objs: Iterable[Any]) -> None:
        self._write(key, lambda f: json_lines(objs, f))

    def read_versioned(self, key: str) -> tuple[Any, str] | None:
        data = self._read(key)
        return None if data is None else (json.loads(data), _digest(data))

    def write_if(self, key: str, obj: Any, version: str | None) -> str | None:
        data = to_json(obj)
        with self._locked(key):
            current = self._read(key)
            if (None if current is None else _digest(current)) != version:
                return None
            self._write(key, lambda f: f.write(data))
        return _digest(data)

    def _read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:  # permissions, I/O: not "absent", so never silently redone
            raise OutputError(f"cannot read {self.uri(key)}: {e.strerror or one_line(e)}") from None

    def _write(self, key: str, fill: Callable[[IO[bytes]], Any]) -> None:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A temporary file in the same directory, then rename: atomic on POSIX.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        except OSError as e:
            raise OutputError(f"cannot write {self.uri(key)}: {e.strerror or one_line(e)}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, OSError):  # a full disk, a permission taken away mid-run
                raise OutputError(f"cannot write {self.uri(key)}: {e.strerror or one_line(e)}") from None
            raise

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Makes a compare and its swap one step among the processes of this machine."""
        folder = (self.root / key).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)  # the folder's own lock: no lock file left behind
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed, or when the process dies
            yield
        finally:
            os.close(fd)

    def versions(self, prefix: str) -> dict[str, str]:
        found = {}
        try:
            for path in self._walk("*.json", self.root / prefix):
                st = path.stat()
                found[path.relative_to(self.root).as_posix()] = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        except FileNotFoundError:  # removed while listed: it is not there
            pass
        except OSError as e:
            raise OutputError(f"cannot list {self.uri(prefix)}: {e.strerror or one_line(e)}") from None
        return found

    def remove_temporaries(self) -> int:
        """Delete temporary files a killed run left behind; returns how many."""
        n = 0
        for tmp in self._walk(f"*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def _walk(self, pattern: str, under: Path | None = None) -> Iterator[Path]:
        under = under or self.root
        if under.exists():
            yield from under.rglob(pattern)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
