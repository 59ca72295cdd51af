"""Run the project's commands as a user would: real subprocesses, no tracebacks allowed."""

from __future__ import annotations

import json
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
