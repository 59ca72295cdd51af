"""Open a source's bytes, wherever it lives: a local file or an S3 object.

Loaders read through ``open_source`` only, so every parser works the same on
both. The size bound is checked before any byte is read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO

from pipelines.records import SourceRef


class SourceUnreadable(Exception):
    """The source cannot be read (gone, access denied, too large); the message says which."""


@contextlib.contextmanager
def open_source(ref: SourceRef, max_bytes: int, limit: str) -> Iterator[IO[bytes]]:
    """A seekable binary file of the source. ``limit`` names the setting behind ``max_bytes``."""
    if ref.uri.startswith("s3://"):
        f = _download(ref, max_bytes, limit)
    else:
        try:
            f = open(ref.uri, "rb")  # noqa: SIM115 - closed below
            size = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise SourceUnreadable(f"cannot read file: {e.strerror or e}") from None
        if size > max_bytes:
            f.close()
            raise SourceUnreadable(f"too large: {size} bytes > limit {limit}={max_bytes}")
    with f:
        yield f


def _download(ref: SourceRef, max_bytes: int, limit: str) -> IO[bytes]:
    from botocore.exceptions import BotoCoreError, ClientError

    from pipelines.s3 import ObjectTooLarge, download, error_text, shared_client, split_uri

    try:
        return download(shared_client(ref.endpoint), *split_uri(ref.uri), max_bytes)
    except ObjectTooLarge as e:
        raise SourceUnreadable(f"too large: {e} (limit {limit})") from None
    except ClientError as e:
        raise SourceUnreadable(f"cannot read object: {error_text(e)}") from None
    except BotoCoreError as e:  # connection failed after retries, bad endpoint, no credentials
        raise SourceUnreadable(f"cannot read object: {e}") from None
