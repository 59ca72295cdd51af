"""OpenAI-compatible servers the tests start on loopback: a free port, a process,
and a wait until ``/v1/models`` answers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], url: str, log: Path, ready_s: float, key: str | None = None, env=None) -> Iterator[str]:
    """Runs ``cmd`` (a server that will listen at ``url``), yields ``url`` once its models
    answer (with ``key`` as the bearer token), and stops it after."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ready_s
        while not _answers(f"{url}/v1/models", headers):
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{cmd[0]} not ready in {ready_s:g} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
