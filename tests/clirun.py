"""Run the project's commands as a user would: real subprocesses, no tracebacks allowed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LONGCTX = str(BIN / "longctx")
BRIEF = str(Path(__file__).parent / "data" / "brief.schema.json")
SMALL = ["--schema", BRIEF, "--max-model-len", "1024"]  # a small schema and context: short CPU prefill
# Under pytest-timeout's 600 s, so a hung command fails as a timeout of its own, with its output.
COMMAND_TIMEOUT_S = 540


def longctx(*args: str, timeout: int = COMMAND_TIMEOUT_S, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return command(LONGCTX, *args, timeout=timeout, env=env)


def extract(*args: str, timeout: int = COMMAND_TIMEOUT_S, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m jobs.extract ...``, the Ray job entry point."""
    return command(sys.executable, "-m", "jobs.extract", *args, timeout=timeout, env=env)


def command(*argv: str, timeout: int, env: dict[str, str] | None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def s3_json(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def local_manifests(out: Path) -> list[dict]:
    """Each run's summary manifest, oldest first, with its per-source list read in as ``sources``."""
    return [
        with_sources(json.loads(p.read_text()), p.with_name("sources.jsonl").read_bytes())
        for p in sorted((out / "_runs").glob("*/manifest.json"))
    ]


def s3_manifests(client, bucket: str, prefix: str) -> list[dict]:
    """``local_manifests`` of an output on S3; ``prefix``: the output's ``_runs/``."""
    keys = [k for k in s3_keys(client, bucket, prefix) if k.endswith("manifest.json")]
    lines = (client.get_object(Bucket=bucket, Key=k.removesuffix("manifest.json") + "sources.jsonl")["Body"].read() for k in keys)
    return [with_sources(s3_json(client, bucket, k), jsonl) for k, jsonl in zip(keys, lines, strict=True)]


def with_sources(manifest: dict, jsonl: bytes) -> dict:
    assert manifest["sources_file"].endswith(f"{manifest['run_id']}/sources.jsonl") and "sources" not in manifest
    sources = [json.loads(line) for line in jsonl.decode().splitlines()]
    assert len(sources) == sum(manifest["counts"].values())  # one line per source, nothing else
    return manifest | {"sources": sources}


def s3_keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def wait_until(condition, what: str, timeout: float = 300, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until it holds; fails past ``timeout``, or when ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, f"the command ended before {what}"
        time.sleep(0.1)


def ray_workers(title: str) -> list[int]:
    """PIDs of Ray worker processes whose title names ``title`` (Ray sets it to the running task)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split(None, 1)[0]) for line in ps.splitlines() if "ray::" in line and title in line]


def kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL a run started with ``start_new_session=True`` as a dying machine would: the driver,
    the Ray instance it started and Ray's workers, which sit in process groups of their own (a
    worker left alive finishes its batch, writing results after the kill). Returns once all are gone."""
    deadline = time.monotonic() + 60
    while alive := session_members(proc.pid):
        assert time.monotonic() < deadline, f"processes of the killed run outlived SIGKILL: {alive}"
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    proc.wait()


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
        except OSError:
            continue  # it ended while we looked
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
