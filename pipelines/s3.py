"""Results on S3 (or any S3-compatible store), behind LocalStorage's methods.

Keys are posix paths relative to ``s3://bucket/prefix/``. Credentials come
only from boto3's standard chain (environment, profile, instance role) and are
never read, printed or logged here.
"""

from __future__ import annotations

import functools
import io
import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.storage import OutputError, StorageError, json_lines, one_line, to_json

MIN_PART_SIZE = 5 * 1024 * 1024  # S3 rejects smaller parts, but the last
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024

# Lenient on purpose (dots, legacy names): S3 itself is the final judge.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]")
_MISSING = {"NoSuchKey", "404", "NotFound"}
# A conditional write that lost: the object changed (412), or another conditional write is in progress (409).
_CONDITION_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix/")``; the prefix is a folder."""
    if not uri.startswith("s3://"):
        raise StorageError(f"not an S3 URI (expected s3://bucket/prefix): {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise StorageError(f"bad bucket name in S3 URI {uri!r}: {bucket!r}")
    if "//" in prefix or any(c in prefix for c in "?#"):
        raise StorageError(f"bad prefix in S3 URI {uri!r}: {prefix!r}")
    return bucket, (prefix.rstrip("/") + "/" if prefix.strip("/") else "")


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/any/key`` -> ``("bucket", "any/key")``, unchecked: object keys may hold any character."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def error_text(e: ClientError) -> str:
    """S3's own words for a failed request: ``NoSuchKey: The specified key does not exist.``"""
    err = e.response.get("Error", {})
    return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()


def _why(e: Exception) -> str:
    if isinstance(e, S3UploadFailedError) and isinstance(e.__context__, ClientError):
        e = e.__context__
    return error_text(e) if isinstance(e, ClientError) else one_line(e)


def is_missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in _MISSING


def head(client: Any, bucket: str, key: str) -> tuple[int, str] | None:
    """``(size, etag)`` of an object, or None when there is none; other errors propagate."""
    try:
        resp = client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if is_missing(e):
            return None
        raise
    return resp["ContentLength"], resp["ETag"].strip('"')


def s3_client(endpoint_url: str | None = None) -> Any:
    """A client that retries throttling and 5xx with backoff.

    With ``endpoint_url`` None, botocore itself honours ``AWS_ENDPOINT_URL``
    (and ``AWS_ENDPOINT_URL_S3``) for MinIO and other S3-compatible stores.
    """
    # total_max_attempts counts the first try; botocore's max_attempts would mean 10 *retries*.
    config = Config(retries={"mode": "standard", "total_max_attempts": 10})
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


@functools.lru_cache(maxsize=8)
def shared_client(endpoint_url: str | None = None) -> Any:
    """One client per endpoint and process (clients are thread-safe and cost ~50 ms to make)."""
    return s3_client(endpoint_url)


class ObjectTooLarge(ValueError):
    pass


def iter_objects(client: Any, bucket: str, prefix: str, page_size: int | None = None) -> Iterator[tuple[str, int, str]]:
    """``(key, size, etag)`` of every object under ``prefix``, one listing page at a time."""
    pagination = {"PageSize": page_size} if page_size else {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, PaginationConfig=pagination)
    for page in pages:
        for obj in page.get("Contents", []):
            yield obj["Key"], obj["Size"], obj["ETag"].strip('"')


SPOOL_BYTES = 32 * 1024 * 1024  # objects up to this stay in memory; larger ones spill to a temporary file


def download(client: Any, bucket: str, key: str, max_bytes: int) -> IO[bytes]:
    """The object's bytes as a seekable file, streamed in chunks; ObjectTooLarge before reading past
    ``max_bytes``. ClientError (NoSuchKey, AccessDenied, ...) propagates."""
    resp = client.get_object(Bucket=bucket, Key=key)
    body = resp["Body"]  # StreamingBody's own context manager yields the raw stream: close it by hand
    try:
        if resp["ContentLength"] > max_bytes:
            raise ObjectTooLarge(f"{resp['ContentLength']} bytes > {max_bytes}")
        f = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
        for chunk in body.iter_chunks(1024 * 1024):
            f.write(chunk)
    finally:
        body.close()
    f.seek(0)
    return f


def read_prefix(client: Any, bucket: str, key: str, n: int) -> bytes:
    """At most the first ``n`` bytes of an object (a ranged GET: a grown object is not fetched whole)."""
    return _read_all(client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{n - 1}")["Body"])


def _read_all(body: Any) -> bytes:
    try:
        return body.read()
    finally:  # release the connection even if reading fails
        body.close()


class S3Storage:
    def __init__(
        self,
        uri: str,
        client: Any = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        endpoint_url: str | None = None,
    ):
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.client = client if client is not None else shared_client(endpoint_url)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(MIN_PART_SIZE, multipart_threshold),
            use_threads=False,  # one result at a time; the run parallelises documents
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def read_json(self, key: str) -> Any | None:
        got = self._get(key)
        try:
            return None if got is None else json.loads(got[0])
        except ValueError:
            return None

    def write_json(self, key: str, obj: Any) -> None:
        self._upload(key, io.BytesIO(to_json(obj)), "application/json")

    def read_bytes(self, key: str) -> bytes | None:
        got = self._get(key)
        return None if got is None else got[0]

    def write_bytes(self, key: str, data: bytes) -> None:
        self._upload(key, io.BytesIO(data), "application/octet-stream")

    def write_lines(self, key: str, objs: Iterable[Any]) -> None:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as f:
            json_lines(objs, f)
            f.seek(0)
            self._upload(key, f, "application/x-ndjson")

    def _upload(self, key: str, f: IO[bytes], content_type: str) -> None:
        # A PUT (or a completed multipart upload) is atomic: readers see the old
        # object or the whole new one, never a partial one. No temporaries needed.
        try:
            extra = {"ContentType": content_type}
            self.client.upload_fileobj(f, self.bucket, self._key(key), ExtraArgs=extra, Config=self.transfer)
        except (ClientError, BotoCoreError, S3UploadFailedError) as e:
            raise OutputError(f"cannot write {self.uri(key)}: {_why(e)}") from None

    def __reduce__(self):
        # A boto3 client does not pickle: a copy (finishing documents in a Ray worker)
        # opens its own, to the same endpoint, with credentials from the worker's own chain.
        return S3Storage, (self.uri(""), None, self.transfer.multipart_threshold, self.client.meta.endpoint_url)

    def read_versioned(self, key: str) -> tuple[Any, str] | None:
        got = self._get(key)
        return None if got is None else (json.loads(got[0]), got[1])

    def write_if(self, key: str, obj: Any, version: str | None) -> str | None:
        condition = {"IfMatch": version} if version else {"IfNoneMatch": "*"}
        try:
            resp = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=to_json(obj), ContentType="application/json", **condition
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _CONDITION_FAILED | _MISSING:
                return None  # the object changed, or is gone
            raise OutputError(f"cannot write {self.uri(key)}: {_why(e)}") from None
        except BotoCoreError as e:
            raise OutputError(f"cannot write {self.uri(key)}: {_why(e)}") from None
        return resp["ETag"].strip('"')

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag; None when absent; anything else (access denied,
        throttled past the retries, no such bucket) is an OutputError, never "absent"."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return _read_all(resp["Body"]), resp["ETag"].strip('"')
        except ClientError as e:
            if is_missing(e):
                return None
            raise OutputError(f"cannot read {self.uri(key)}: {_why(e)}") from None
        except BotoCoreError as e:
            raise OutputError(f"cannot read {self.uri(key)}: {_why(e)}") from None

    def remove_temporaries(self) -> int:
        """Abort multipart uploads under the prefix that a killed run left; returns how many.
        Their parts are invisible to readers but are billed until aborted. Called only by
        the run that holds the output's lease, so none of them is a live run's."""
        n = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for up in page.get("Uploads", []):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    n += 1
        except (ClientError, BotoCoreError) as e:
            raise OutputError(f"cannot clean up unfinished uploads under {self.uri('')}: {_why(e)}") from None
        return n

    def versions(self, prefix: str) -> dict[str, str]:
        try:
            return {key: etag for key, _, etag in self.list_keys(prefix) if key.endswith(".json")}
        except (ClientError, BotoCoreError) as e:
            raise OutputError(f"cannot list {self.uri(prefix)}: {_why(e)}") from None

    def list_keys(self, prefix: str = "", page_size: int | None = None) -> Iterator[tuple[str, int, str]]:
        """``(key, size, etag)`` for every object under ``prefix``, keys relative to the root."""
        for key, size, etag in iter_objects(self.client, self.bucket, self._key(prefix), page_size):
            yield key[len(self.prefix) :], size, etag

    def _key(self, key: str) -> str:
        parts = key.split("/")
        if key.startswith("/") or "" in parts[:-1] or any(p in (".", "..") for p in parts):
            raise ValueError(f"bad storage key: {key!r}")
        return self.prefix + key
