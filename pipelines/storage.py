"""Where results go. Local directories now; S3 implements the same methods.

Writes are atomic: a reader sees the whole object or none of it. Keys are
posix paths relative to the output root.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

TEMP_SUFFIX = ".longctx-tmp"


class StorageError(ValueError):
    """An output location that cannot be used (a malformed s3:// URI, ...)."""


class Storage(Protocol):
    def uri(self, key: str) -> str: ...

    def read_json(self, key: str) -> dict[str, Any] | None: ...

    def write_json(self, key: str, obj: Any) -> None: ...

    def remove_temporaries(self) -> int: ...


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

    def read_json(self, key: str) -> dict[str, Any] | None:
        """The stored object, or None when absent or unreadable (then it is redone)."""
        try:
            return json.loads((self.root / key).read_text())
        except (OSError, ValueError):
            return None

    def write_json(self, key: str, obj: Any) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary file in the same directory, then rename: atomic on POSIX.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(obj, f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove_temporaries(self) -> int:
        """Delete temporary files a killed run left behind; returns how many."""
        n = 0
        for tmp in self._walk(f"*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def _walk(self, pattern: str) -> Iterator[Path]:
        if self.root.exists():
            yield from self.root.rglob(pattern)
