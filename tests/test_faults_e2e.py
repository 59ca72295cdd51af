"""Faults in the middle of a run, end to end: a parsing worker killed, an
inference actor killed, S3 answering throttling and 500s, the output refusing
writes, the whole run killed or interrupted, a second run on the same output.
After each: exactly one result per input document, nothing partial or
temporary left, the manifest's counts add up, and a rerun does nothing twice.
Real parts: the loopback S3 server, local Ray, the embedded model, real
signals."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest

from tests.clirun import LONGCTX, SMALL, kill_run, longctx, ray_workers, s3_json, s3_keys, s3_manifests, wait_until
from tests.s3server import client_with_bucket

BUCKET = "faults"
NOTES = 4


@pytest.fixture
def client(s3):
    return client_with_bucket(s3.url, BUCKET)


@pytest.fixture
def uri(client) -> str:
    """``s3://faults/<fresh>/``, holding ``in/`` with a few short notes."""
    prefix = f"{uuid.uuid4().hex[:8]}/"
    for i in range(NOTES):
        body = f"# Note {i}\n\nItem {i}: the parser was fixed and the packer shipped on day {i}.\n"
        client.put_object(Bucket=BUCKET, Key=f"{prefix}in/note{i}.md", Body=body.encode())
    return f"s3://{BUCKET}/{prefix}"


def start_run(uri: str, env: dict[str, str]) -> subprocess.Popen:
    # SIGINT at its default in the run, as for a command typed at a terminal: a test suite started
    # in the background (a non-interactive shell's `cmd &`) ignores SIGINT, which its children
    # would inherit, and a Ctrl-C sent to the run would never arrive (seen in CI: the run finished).
    return subprocess.Popen([LONGCTX, "run", uri + "in/", "--out", uri + "out/", *SMALL], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def results(client, uri: str) -> dict[str, dict]:
    prefix = uri.removeprefix(f"s3://{BUCKET}/") + "out/brief/"
    return {k.removeprefix(prefix): s3_json(client, BUCKET, k) for k in s3_keys(client, BUCKET, prefix) if k.endswith(".json")}


def manifests(client, uri: str) -> list[dict]:
    prefix = uri.removeprefix(f"s3://{BUCKET}/") + "out/_runs/"
    return s3_manifests(client, BUCKET, prefix)


def assert_whole(client, uri: str, s3_env: dict[str, str]) -> None:
    """One ok result per note, no unfinished uploads, counts that add up, and a rerun that redoes nothing."""
    res = results(client, uri)
    assert set(res) == {f"note{i}.md.json" for i in range(NOTES)}
    assert all(r["status"] == "ok" for r in res.values()), {k: r["reason"] for k, r in res.items()}
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
    runs = manifests(client, uri)
    assert runs, "no run finished"
    assert sum(runs[-1]["counts"].values()) == NOTES == len(runs[-1]["sources"])
    done = sum(m["counts"]["ok"] for m in runs)
    assert done <= NOTES  # across finished runs, no document was done twice
    etags = {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in s3_keys(client, BUCKET, prefix + "out/brief/")}
    proc = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    assert manifests(client, uri)[-1]["counts"] == {"ok": 0, "partial": 0, "failed": 0, "skipped": NOTES, "not_reached": 0}
    assert {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in etags} == etags


def finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=540)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("attempt", range(2))
def test_a_killed_parsing_worker_is_retried(attempt, uri, client, s3, s3_env):
    gate = s3.hold("GET", "in/note2.md")  # that document's parse task stalls reading it
    proc = start_run(uri, s3_env)
    try:
        wait_until(lambda: ray_workers("parse_and_pack"), "a parse task")
        wait_until(lambda: any(m == "GET" and p.endswith("in/note2.md") for m, p in s3.requests), "the stalled read")
        reads = sum(1 for m, p in s3.requests if m == "GET" and p.endswith("in/note2.md"))
        for pid in ray_workers("parse_and_pack"):
            os.kill(pid, signal.SIGKILL)
        # Ray runs the task again on another worker: its read arrives anew.
        wait_until(lambda: sum(1 for m, p in s3.requests if m == "GET" and p.endswith("in/note2.md")) > reads, "the retry")
    finally:
        gate.set()
    finish(proc)
    assert_whole(client, uri, s3_env)


@pytest.mark.parametrize("attempt", range(2))
def test_a_killed_inference_actor_is_restarted(attempt, uri, client, s3_env):
    proc = start_run(uri, s3_env)
    wait_until(lambda: results(client, uri), "a first result")
    actors = ray_workers("InferActor")
    assert actors, "no inference actor found"
    for pid in actors:
        os.kill(pid, signal.SIGKILL)
    finish(proc)
    assert_whole(client, uri, s3_env)


def test_throttling_and_server_errors_during_a_run(uri, client, s3, s3_env):
    s3.fail_next(3, 503, "SlowDown", method="GET", path_contains="/in/")  # reads of sources
    s3.fail_next(3, 500, "InternalError", method="PUT", path_contains="/out/")  # writes of results
    s3.fail_next(2, 503, "SlowDown", method="GET", path_contains="/out/")  # reads of stored results
    proc = start_run(uri, s3_env)
    finish(proc)
    assert s3.faults_served >= 8
    assert_whole(client, uri, s3_env)


def test_a_killed_run_resumes_on_s3(uri, client, s3_env):
    proc = start_run(uri, s3_env)
    wait_until(lambda: results(client, uri), "a first result")
    kill_run(proc)  # mid-run: the driver, its Ray instance and Ray's workers
    first = set(results(client, uri))
    assert 1 <= len(first) < NOTES and manifests(client, uri) == []
    proc = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    [m] = manifests(client, uri)
    assert m["counts"]["skipped"] == len(first) and m["counts"]["ok"] == NOTES - len(first)
    assert_whole(client, uri, s3_env)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_an_output_that_refuses_writes_stops_the_run_with_its_manifest(uri, client, s3, s3_env):
    # The bucket's policy changes mid-run: every result PUT after the first is denied (403: not retried).
    s3.fail_next(1000, 403, "AccessDenied", method="PUT", path_contains="/out/brief/", after=1)
    proc = start_run(uri, s3_env)
    _, err = proc.communicate(timeout=540)
    assert proc.returncode == 1, err
    assert "cannot write s3://faults/" in one_error_line(err) and "AccessDenied" in err
    assert "run stopped: 1 written, 3 not reached (manifest s3://" in err
    (manifest,) = manifests(client, uri)
    assert manifest["counts"]["ok"] == 1 and manifest["counts"]["not_reached"] == NOTES - 1
    assert len(manifest["sources"]) == NOTES and "AccessDenied" in manifest["stopped"]
    assert len(results(client, uri)) == 1
    s3.clear_faults()  # the policy is fixed: the same command does the rest
    proc = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    assert manifests(client, uri)[-1]["counts"] == {"ok": NOTES - 1, "partial": 0, "failed": 0, "skipped": 1, "not_reached": 0}
    assert_whole(client, uri, s3_env)


def test_an_output_bucket_that_does_not_exist_is_one_line(uri, s3_env):
    proc = longctx("run", uri + "in/", "--out", "s3://no-such-bucket-here/out/", *SMALL, env=s3_env)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc.stderr) == "error: cannot write s3://no-such-bucket-here/out/_runs/_lease.json: " + (
        "NoSuchBucket: The specified bucket does not exist"
    )


def test_ctrl_c_then_rerun_does_each_document_once(uri, client, s3_env):
    proc = start_run(uri, s3_env)
    wait_until(lambda: results(client, uri), "a first result")
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C reaches the driver
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: " in err and "run the same command again" in err
    (manifest,) = manifests(client, uri)
    written = manifest["counts"]["ok"]  # outcomes the driver had gathered
    assert manifest["stopped"] == "interrupted" and written < NOTES
    assert (
        manifest["counts"]["not_reached"]
        == NOTES - written
        == len([s for s in manifest["sources"] if s["status"] == "not_reached"])
    )
    # At least the first result is stored; one finished in the graph as the stop came counts not_reached, yet stays.
    stored = len(results(client, uri))
    assert written <= stored < NOTES and stored >= 1
    proc = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    counts = manifests(client, uri)[-1]["counts"]
    assert counts["ok"] == NOTES - stored and counts["skipped"] == stored  # none done twice, none left
    assert_whole(client, uri, s3_env)


def test_two_runs_on_one_output(uri, client, s3, s3_env):
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    # Requests of this test's prefix only: the server, shared by the tests, keeps those of earlier ones.
    lease_reads = lambda: sum(1 for m, p in s3.requests if m == "GET" and p.endswith(f"{prefix}out/_runs/_lease.json"))  # noqa: E731
    gate = s3.hold("GET", "in/note3.md")  # the first run stays busy with that note until the gate opens
    try:
        first = start_run(uri, s3_env)
        wait_until(lambda: s3_keys(client, BUCKET, prefix + "out/_runs/_lease.json"), "the first run's lease", proc=first)
        # Past its start-up clean-up (which aborts every upload it finds): it is reading the held note.
        held = lambda: any(m == "GET" and p.endswith(f"{prefix}in/note3.md") for m, p in s3.requests)  # noqa: E731
        wait_until(held, "the held read", proc=first)
        # An upload of the first run in flight (as a large result's multipart upload would be).
        upload = client.create_multipart_upload(Bucket=BUCKET, Key=prefix + "out/brief/big.json")
        second = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, env=s3_env, timeout=120)
        assert second.returncode == 2, second.stderr
        assert "is in use by another run" in one_error_line(second.stderr) and "--wait-for-lease" in second.stderr
        uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
        assert [u["UploadId"] for u in uploads] == [upload["UploadId"]]  # the refused run touched nothing
        read = lease_reads()
        waiting = subprocess.Popen([LONGCTX, "run", uri + "in/", "--out", uri + "out/", *SMALL, "--wait-for-lease", "600"],
                                   env=s3_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_until(lambda: lease_reads() > read, "the second run to find the lease held", proc=waiting)
    finally:
        gate.set()
    finish(first)
    out, err = waiting.communicate(timeout=540)
    assert waiting.returncode == 0, err
    assert "waiting for another run" in out
    runs = manifests(client, uri)
    assert [m["counts"]["ok"] for m in runs] == [NOTES, 0]  # the first did every note, the one that waited none
    assert runs[1]["counts"]["skipped"] == NOTES
    assert_whole(client, uri, s3_env)  # the waiting run, holding the lease, cleaned up what the first left
