"""Shared fixtures: one S3-compatible server on loopback for the whole session."""

from __future__ import annotations

import os

import pytest

from tests.s3server import CREDENTIALS, S3Server


@pytest.fixture(scope="session")
def s3_server():
    mp = pytest.MonkeyPatch()
    for name, value in CREDENTIALS.items():
        mp.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(name, raising=False)
    server = S3Server().start()
    yield server
    server.stop()
    mp.undo()


@pytest.fixture
def s3(s3_server):
    """The server, with no faults left over from another test."""
    s3_server.clear_faults()
    yield s3_server
    s3_server.clear_faults()


@pytest.fixture
def s3_env(s3) -> dict[str, str]:
    """The environment for a subprocess that talks to the loopback server."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE",)}
    return {**env, **CREDENTIALS, "AWS_ENDPOINT_URL": s3.url}
