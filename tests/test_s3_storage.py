"""S3Storage against a real S3-compatible HTTP server on loopback (moto's
server mode), never an in-process mock of boto3: every call here crosses a
socket, signs its request and parses the server's XML."""

from __future__ import annotations

import json
import uuid

import pytest

from pipelines.s3 import MIN_PART_SIZE, S3Storage, parse_s3_uri, s3_client
from pipelines.storage import OutputError
from tests.s3server import client_with_bucket

BUCKET = "longctx-test"


@pytest.fixture
def endpoint(s3):
    client_with_bucket(s3.url, BUCKET)
    return s3.url


@pytest.fixture
def client(endpoint):
    return s3_client(endpoint)


@pytest.fixture
def store(client):
    # A fresh prefix per test: tests share the server but not their objects.
    return S3Storage(f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}/", client=client)


def _uploads(client, prefix: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])


def test_round_trip_and_uri(store, client):
    key = "invoice/pdfs/a b/ünï.pdf.json"
    obj = {"data": {"total": 12.5, "name": "Zoë"}, "status": "ok"}
    store.write_json(key, obj)
    assert store.read_json(key) == obj
    assert store.uri(key) == f"s3://{BUCKET}/{store.prefix}{key}"
    head = client.head_object(Bucket=BUCKET, Key=store.prefix + key)
    assert head["ContentType"] == "application/json"
    store.write_json(key, {"status": "redone"})  # overwrite replaces the whole object
    assert store.read_json(key) == {"status": "redone"}


def test_missing_and_corrupt_read_as_none(store, client):
    assert store.read_json("invoice/nothing.json") is None
    client.put_object(Bucket=BUCKET, Key=store.prefix + "invoice/torn.json", Body=b'{"status": "o')
    assert store.read_json("invoice/torn.json") is None


def test_other_errors_raise(client):
    # A missing bucket is not a missing result: redoing everything would hide it.
    with pytest.raises(OutputError, match="cannot read s3://no-such-bucket-here/out/a.json: NoSuchBucket"):
        S3Storage("s3://no-such-bucket-here/out/", client=client).read_json("a.json")


def test_list_keys_walks_every_page(store, client):
    for i in range(25):
        store.write_json(f"s/doc{i:02d}.json", {"i": i})
    store.write_json("other/x.json", {})
    calls = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    listed = list(store.list_keys("s/", page_size=10))
    assert len(calls) == 3  # 10 + 10 + 5
    assert [k for k, _, _ in listed] == [f"s/doc{i:02d}.json" for i in range(25)]
    key, size, etag = listed[0]
    head = client.head_object(Bucket=BUCKET, Key=store.prefix + key)
    assert size == head["ContentLength"] and etag == head["ETag"].strip('"')
    assert len(list(store.list_keys())) == 26


def test_large_object_goes_multipart(client):
    store = S3Storage(f"s3://{BUCKET}/mp-{uuid.uuid4().hex[:8]}", client=client, multipart_threshold=1024)
    obj = {"chunks": [f"{i:08d}" + "x" * 1000 for i in range(6000)]}  # about 6 MiB of JSON: two parts
    store.write_json("big.json", obj)
    head = client.head_object(Bucket=BUCKET, Key=store.prefix + "big.json")
    assert head["ContentLength"] > MIN_PART_SIZE
    assert head["ETag"].strip('"').endswith("-2")  # a multipart object's ETag counts its parts
    assert store.read_json("big.json") == obj
    assert _uploads(client, store.prefix) == []


def test_remove_temporaries_aborts_incomplete_uploads(store, client):
    outside = client.create_multipart_upload(Bucket=BUCKET, Key="elsewhere/x.json")
    up = client.create_multipart_upload(Bucket=BUCKET, Key=store.prefix + "s/killed.json")
    client.upload_part(Bucket=BUCKET, Key=store.prefix + "s/killed.json", UploadId=up["UploadId"], PartNumber=1, Body=b"{")
    assert len(_uploads(client, store.prefix)) == 1
    assert store.remove_temporaries() == 1
    assert _uploads(client, store.prefix) == []
    assert store.read_json("s/killed.json") is None
    assert store.remove_temporaries() == 0
    # Uploads outside the prefix belong to someone else and stay.
    assert [u["UploadId"] for u in _uploads(client, "elsewhere/")] == [outside["UploadId"]]
    client.abort_multipart_upload(Bucket=BUCKET, Key="elsewhere/x.json", UploadId=outside["UploadId"])


def test_endpoint_from_environment(endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    store = S3Storage(f"s3://{BUCKET}/env/")  # no client, no endpoint: botocore reads the variable
    assert store.client.meta.endpoint_url == endpoint
    store.write_json("a.json", [1, 2])
    assert store.read_json("a.json") == [1, 2]


def test_client_retries_with_backoff():
    assert s3_client("http://127.0.0.1:9").meta.config.retries == {"mode": "standard", "total_max_attempts": 10}


def test_throttling_and_server_errors_are_retried(store, s3):
    store.write_json("t.json", {"ok": True})
    # The server itself answers SlowDown twice, then a 500: botocore's standard mode retries all three.
    s3.fail_next(2, 503, "SlowDown", method="GET", path_contains="t.json")
    s3.fail_next(1, 500, "InternalError", method="GET", path_contains="t.json")
    before = len(s3.requests)
    assert store.read_json("t.json") == {"ok": True}
    assert s3.faults_served >= 3
    assert [m for m, p in s3.requests[before:] if p.endswith("t.json")] == ["GET"] * 4
    s3.fail_next(3, 503, "SlowDown", method="PUT", path_contains="w.json")
    store.write_json("w.json", [1])
    assert store.read_json("w.json") == [1]


def test_persistent_errors_surface_after_the_retry_budget(store, s3, client):
    store.write_json("down.json", {})
    s3.fail_next(100, 500, "InternalError", method="GET", path_contains="down.json")
    before = len(s3.requests)
    with pytest.raises(OutputError, match=r"cannot read s3://.*/down.json: InternalError"):
        store.read_json("down.json")  # never mistaken for "absent"
    assert len(s3.requests) - before == 10  # total_max_attempts
    s3.fail_next(100, 500, "InternalError", method="PUT", path_contains="up.json")
    with pytest.raises(OutputError, match=r"cannot write s3://.*/up.json: InternalError: We encountered"):
        store.write_json("up.json", {})


def test_conditional_writes(store, client):
    v1 = store.write_if("_runs/l.json", {"n": 1}, None)  # If-None-Match: *
    assert v1 and store.write_if("_runs/l.json", {"n": 2}, None) is None
    assert store.write_if("_runs/l.json", {"n": 2}, '"0123"') is None  # If-Match: another version
    v2 = store.write_if("_runs/l.json", {"n": 2}, v1)
    assert v2 and v2 != v1 and store.read_versioned("_runs/l.json") == ({"n": 2}, v2)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket/a/b", ("bucket", "a/b/")),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://my.bucket-1/out/", ("my.bucket-1", "out/")),
    ],
)
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "bucket/prefix",
        "s3:/bucket/x",
        "https://bucket/x",
        "s3://",
        "s3:///prefix",
        "s3://B/x",
        "s3://ab",
        "s3://bucket/a//c",
        "s3://bucket/x?y",
    ],
)
def test_parse_s3_uri_rejects_malformed(uri):
    with pytest.raises(ValueError, match="S3 URI"):
        parse_s3_uri(uri)


@pytest.mark.parametrize("key", ["/abs.json", "a//b.json", "../x.json", "a/./b.json"])
def test_bad_keys_rejected(store, key):
    with pytest.raises(ValueError, match="bad storage key"):
        store.uri(key)


def test_write_is_valid_json_bytes(store, client):
    store.write_json("k.json", {"a": "é"})
    body = client.get_object(Bucket=BUCKET, Key=store.prefix + "k.json")["Body"].read()
    assert json.loads(body.decode("utf-8")) == {"a": "é"}


def test_json_lines_are_streamed_in_one_object_and_a_pickled_store_writes_to_the_same_place(store, client):
    import pickle

    store.write_lines("_runs/r/sources.jsonl", ({"i": i, "name": "Zoë"} for i in range(3)))
    body = client.get_object(Bucket=BUCKET, Key=store.prefix + "_runs/r/sources.jsonl")["Body"].read()
    assert body.decode().splitlines() == [json.dumps({"i": i, "name": "Zoë"}, ensure_ascii=False) for i in range(3)]
    copy = pickle.loads(pickle.dumps(store))  # as the graph's finish stage gets it, in another process
    assert copy.uri("a.json") == store.uri("a.json") and copy.client is not client
    copy.write_json("a.json", {"from": "copy"})
    assert store.read_json("a.json") == {"from": "copy"}
