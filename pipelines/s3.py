"""Results on S3 (or any S3-compatible store), behind LocalStorage's methods.

Keys are posix paths relative to ``s3://bucket/prefix/``. Credentials come
only from boto3's standard chain (environment, profile, instance role) and are
never read, printed or logged here.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

MIN_PART_SIZE = 5 * 1024 * 1024  # S3 rejects smaller parts, but the last
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024

# Lenient on purpose (dots, legacy names): S3 itself is the final judge.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]")
_MISSING = {"NoSuchKey", "404", "NotFound"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix/")``; the prefix is a folder."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI (expected s3://bucket/prefix): {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"bad bucket name in S3 URI {uri!r}: {bucket!r}")
    if "//" in prefix or any(c in prefix for c in "?#"):
        raise ValueError(f"bad prefix in S3 URI {uri!r}: {prefix!r}")
    return bucket, (prefix.rstrip("/") + "/" if prefix.strip("/") else "")


def s3_client(endpoint_url: str | None = None) -> Any:
    """A client that retries throttling and 5xx with backoff.

    With ``endpoint_url`` None, botocore itself honours ``AWS_ENDPOINT_URL``
    (and ``AWS_ENDPOINT_URL_S3``) for MinIO and other S3-compatible stores.
    """
    # total_max_attempts counts the first try; botocore's max_attempts would mean 10 *retries*.
    config = Config(retries={"mode": "standard", "total_max_attempts": 10})
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


class S3Storage:
    def __init__(self, uri: str, client: Any = None, multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD):
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.client = client if client is not None else s3_client()
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(MIN_PART_SIZE, multipart_threshold),
            use_threads=False,  # one result at a time; the run parallelises documents
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def read_json(self, key: str) -> dict[str, Any] | None:
        """The stored object, or None when absent or unreadable (then it is redone)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with body:  # a streaming body: release the connection even if reading fails
                data = body.read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise  # access denied, throttled past retries, ...: not "absent", so never silently redo
        try:
            return json.loads(data)
        except ValueError:
            return None

    def write_json(self, key: str, obj: Any) -> None:
        # A PUT (or a completed multipart upload) is atomic: readers see the old
        # object or the whole new one, never a partial one. No temporaries needed.
        data = json.dumps(obj, ensure_ascii=False, indent=1).encode()
        self.client.upload_fileobj(
            io.BytesIO(data),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": "application/json"},
            Config=self.transfer,
        )

    def remove_temporaries(self) -> int:
        """Abort multipart uploads under the prefix that a killed run left; returns how many.

        Their parts are invisible to readers but are billed until aborted.
        """
        n = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for up in page.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                n += 1
        return n

    def list_keys(self, prefix: str = "", page_size: int | None = None) -> Iterator[tuple[str, int, str]]:
        """``(key, size, etag)`` for every object under ``prefix``, keys relative to the root."""
        pagination = {"PageSize": page_size} if page_size else {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix), PaginationConfig=pagination
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :], obj["Size"], obj["ETag"].strip('"')

    def _key(self, key: str) -> str:
        parts = key.split("/")
        if key.startswith("/") or "" in parts[:-1] or any(p in (".", "..") for p in parts):
            raise ValueError(f"bad storage key: {key!r}")
        return self.prefix + key
