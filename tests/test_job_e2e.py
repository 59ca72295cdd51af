"""The job on S3, end to end: ``longctx run s3://... --out s3://...``, the
nightly spec through ``python -m jobs.extract``, and the same job submitted
to a real Ray head through its Job API. Real parts throughout: the loopback
S3 server, local Ray, the embedded model."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from tests.clirun import BIN, BRIEF, LONGCTX, SMALL, extract, longctx, s3_json, s3_keys, s3_manifests
from tests.pdfgen import make_corrupt_pdf
from tests.repogen import make_repo
from tests.s3server import client_with_bucket, upload_tree

ROOT = Path(__file__).parent.parent
BUCKET = "jobs"
COMPARED = ("status", "reason", "data", "windows", "skipped_files", "schema_hash", "model")


@pytest.fixture
def client(s3):
    return client_with_bucket(s3.url, BUCKET)


def write_corpus(root: Path) -> Path:
    """A note, a corrupt PDF and a repository checkout."""
    root.mkdir()
    (root / "notes.md").write_text("# Weekly notes\n\nThe team shipped the parser and fixed two bugs.\n")
    make_corrupt_pdf(root / "broken.pdf")
    tool = {"README.md": "# tool\n\nCounts words.\n", "count.py": "def count(s):\n    return len(s.split())\n"}
    make_repo(root / "tool", tool, git=True)
    return root


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> dict[str, dict]:
    """The results of a plain local run of the corpus: what every S3 run must match."""
    tmp = tmp_path_factory.mktemp("local")
    out = tmp / "out"
    proc = longctx("run", str(write_corpus(tmp / "in")), "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    return {p.relative_to(out / "brief").as_posix(): json.loads(p.read_text()) for p in (out / "brief").rglob("*.json")}


@pytest.fixture
def corpus(tmp_path: Path, client) -> str:
    """The corpus under a fresh S3 prefix (``<prefix>in/``); returns the prefix."""
    prefix = f"{uuid.uuid4().hex[:8]}/"
    upload_tree(client, BUCKET, prefix + "in/", write_corpus(tmp_path / "in"))
    return prefix


def s3_results(client, prefix: str) -> dict[str, dict]:
    keys = [k for k in s3_keys(client, BUCKET, prefix + "out/brief/") if k.endswith(".json")]
    return {k.removeprefix(prefix + "out/brief/"): s3_json(client, BUCKET, k) for k in keys}


def assert_same(remote: dict[str, dict], local: dict[str, dict]) -> None:
    assert set(remote) == set(local) == {"notes.md.json", "broken.pdf.json", "tool.json"}
    for name in local:
        for field in COMPARED:
            assert remote[name][field] == local[name][field], (name, field)
    assert local["notes.md.json"]["status"] == "ok" and local["tool.json"]["status"] == "ok"
    assert local["broken.pdf.json"]["status"] == "failed"


def manifests(client, prefix: str) -> list[dict]:
    return s3_manifests(client, BUCKET, prefix + "out/_runs/")


def test_s3_in_and_out_match_a_local_run(corpus, client, s3, s3_env, local_run):
    prefix = corpus
    uri = f"s3://{BUCKET}/{prefix}"
    proc = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    assert f"{uri}out/brief" in proc.stdout
    assert_same(s3_results(client, prefix), local_run)
    [m] = manifests(client, prefix)
    assert m["counts"] == {"ok": 2, "partial": 0, "failed": 1, "skipped": 0, "not_reached": 0}
    assert {s["source"] for s in m["sources"]} == {uri + "in/notes.md", uri + "in/broken.pdf", uri + "in/tool/"}
    # The schema's Parquet table, beside the results on S3, holds what they hold.
    [part] = s3_keys(client, BUCKET, prefix + "out/brief/_table/")
    parts = pq.read_table(io.BytesIO(client.get_object(Bucket=BUCKET, Key=part)["Body"].read()))  # noqa: F841
    rows = duckdb.sql("select result_key, status, title from parts order by result_key").fetchall()
    res = s3_results(client, prefix)
    assert rows == sorted((f"brief/{k}", r["status"], (r["data"] or {}).get("title")) for k, r in res.items())
    assert m["table"]["rows"] == 3 and m["table"]["folder"] == f"{uri}out/brief/_table/"
    # The incremental rerun works on S3 as on disk: nothing redone, nothing rewritten.
    etags = {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in s3_keys(client, BUCKET, prefix + "out/brief/")}
    # (This time the endpoint comes from the flag, not from AWS_ENDPOINT_URL.)
    no_env = {k: v for k, v in s3_env.items() if k != "AWS_ENDPOINT_URL"}
    proc = longctx("run", uri + "in/", "--out", uri + "out/", *SMALL, "--s3-endpoint-url", s3.url, env=no_env)
    assert proc.returncode == 0, proc.stderr
    assert manifests(client, prefix)[-1]["counts"]["skipped"] == 3
    assert {k: client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in etags} == etags
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []


def test_nightly_spec_redoes_exactly_the_changed_and_the_added(corpus, client, s3_env):
    prefix = corpus
    uri = f"s3://{BUCKET}/{prefix}"
    nightly = ROOT / "infra" / "jobs" / "nightly.yaml"
    args = ["--config", str(nightly), "--source", uri + "in/", "--output", uri + "out/", "--schema", BRIEF,
            "--engine", "llamacpp", "--set", "engine.model=null", "--set", "engine.options={}",
            "--set", "engine.max_model_len=1024"]  # fmt: skip  # the embedded engine in place of the GPU one
    proc = extract(*args, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    first = s3_results(client, prefix)
    client.put_object(Bucket=BUCKET, Key=prefix + "in/notes.md", Body=b"# Weekly notes\n\nThe team shipped the packer.\n")
    client.put_object(Bucket=BUCKET, Key=prefix + "in/added.md", Body=b"# Added\n\nA new note arrived overnight.\n")
    proc = extract(*args, env=s3_env)
    assert proc.returncode == 0, proc.stderr
    runs = manifests(client, prefix)
    assert len(runs) == 2 and all(m["run_id"].startswith("nightly-20") for m in runs)  # dated
    redone = {s["source"].removeprefix(uri + "in/") for s in runs[1]["sources"] if s["status"] != "skipped"}
    assert redone == {"notes.md", "added.md"}
    assert runs[1]["counts"]["skipped"] == 2  # the corrupt PDF and the repository
    second = s3_results(client, prefix)
    assert set(second) == set(first) | {"added.md.json"}
    assert second["tool.json"] == first["tool.json"]  # untouched: byte-for-byte the same record
    assert second["notes.md.json"]["fingerprint"] != first["notes.md.json"]["fingerprint"]


def test_bad_job_specs_fail_before_any_work(tmp_path: Path):
    spec = tmp_path / "job.yaml"
    cases = {
        "sources: []\noutput: out\n": "sources: List should have at least 1 item",
        "sources: [x]\noutput: out\nengine: {concurency: 2}\n": "engine.concurency: Extra inputs are not permitted",
        "sources: [x]\noutput: out\nlimits: {max_pdf_pages: many}\n": "limits.max_pdf_pages: Input should be a valid integer",
        "sources: [x\n": "not valid YAML",
        "sources: [./nowhere]\noutput: out\nschemas: [brief]\n": "unknown schema 'brief'",
        "sources: [./nowhere]\noutput: out\n": "no such file or directory: ./nowhere",
        "sources: [a]\noutput: s3://Bad_Bucket/x\n": "bad bucket name",
    }
    for text, message in cases.items():
        spec.write_text(text)
        proc = extract("--config", str(spec))
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (text, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = extract("--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "cannot read job file" in proc.stderr
    spec.write_text("sources: [x]\noutput: out\n")
    proc = longctx("submit", str(spec), "--address", "http://127.0.0.1:9", "--working-dir", str(tmp_path / "elsewhere"))
    assert proc.returncode == 2 and "is not inside the working directory" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(s3_env, tmp_path: Path):
    """A Ray head with its dashboard (the Job API) on free ports; its workers see the loopback S3."""
    port, dashboard = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    log = open(tmp_path / "ray-head.log", "wb")  # noqa: SIM115 - closed at teardown
    # Token auth on, as on a real cluster, with a token of its own (not one found in ~/.ray).
    env = {**s3_env, "PATH": f"{BIN}{os.pathsep}{s3_env.get('PATH', '')}", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}  # fmt: skip
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while True:
        assert head.poll() is None, (tmp_path / "ray-head.log").read_text()[-3000:]
        try:
            urllib.request.urlopen(address + "/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # 401: up, with Ray's token auth (clients here read ~/.ray/auth_token)
            break
        except OSError:
            assert time.monotonic() < deadline, "the Job API did not come up"
            time.sleep(1)
    yield address, env
    os.killpg(head.pid, signal.SIGTERM)  # --block: the head takes its processes down with it
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


def test_submitted_ray_job_matches_a_local_run(corpus, client, ray_head, s3_env, local_run, tmp_path: Path):
    prefix = corpus
    work = tmp_path / "project"
    work.mkdir()
    uri = f"s3://{BUCKET}/{prefix}"
    spec = {"sources": [uri + "in/"], "output": uri + "out/", "schemas": [BRIEF],
            "engine": {"name": "llamacpp", "max_model_len": 1024}}  # fmt: skip
    (work / "job.yaml").write_text(yaml.safe_dump(spec))
    address, env = ray_head
    proc = subprocess.run([LONGCTX, "submit", "job.yaml", "--address", address], cwd=work, env=s3_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "requires a token" in proc.stderr, proc.stderr  # without the token: one clear line
    proc = subprocess.run([LONGCTX, "submit", "job.yaml", "--address", address], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted job raysubmit_" in proc.stdout and "SUCCEEDED" in proc.stdout
    assert "documents ok" in proc.stdout  # the job's own summary, followed from its logs
    assert_same(s3_results(client, prefix), local_run)
