"""The output lease on both stores: a local folder and the loopback S3 server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from pipelines.lease import LEASE_KEY, Lease, LeaseHeld, LeaseLost
from pipelines.s3 import S3Storage
from pipelines.storage import LocalStorage
from tests.s3server import client_with_bucket


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "out")
    s3 = request.getfixturevalue("s3")
    client = client_with_bucket(s3.url, "longctx-lease")
    return S3Storage(f"s3://longctx-lease/{uuid.uuid4().hex[:8]}/", client=client)


def test_one_run_at_a_time(store):
    with Lease(store, 60, "first").take(0):
        held, _ = store.read_versioned(LEASE_KEY)
        assert held["holder"] == "first" and held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(LeaseHeld, match=r"in use by another run \(first .*--wait-for-lease"):
            Lease(store, 60, "second").take(0)
    assert store.read_versioned(LEASE_KEY)[0]["released"]  # released by marking it expired: nothing is deleted
    with Lease(store, 60, "second").take(0):
        assert store.read_versioned(LEASE_KEY)[0]["holder"] == "second"


def test_a_second_run_waits_for_the_first(store):
    first = Lease(store, 60, "first").take(0)
    waited = []
    threading.Timer(1.0, first.release).start()
    t0 = time.monotonic()
    with Lease(store, 60, "second").take(30, on_wait=waited.append):
        assert store.read_versioned(LEASE_KEY)[0]["holder"] == "second"
    assert [h["holder"] for h in waited] == ["first"] and time.monotonic() - t0 >= 1.0


def test_renewal_keeps_a_short_lease_alive(store):
    with Lease(store, 4, "first").take(0) as lease:
        v0 = lease.version
        time.sleep(5)  # past the first expiry: renewed every ttl/4
        assert lease.version != v0
        with pytest.raises(LeaseHeld):
            Lease(store, 4, "second").take(0)
        lease.check()


def test_an_expired_lease_is_taken_over_and_its_holder_stops(store):
    stale = Lease(store, 60, "stale")
    stale.version = store.write_if(LEASE_KEY, {**stale.record(time.time()), "expires_at_unix": time.time() - 1}, None)
    with Lease(store, 60, "next").take(0):
        assert store.read_versioned(LEASE_KEY)[0]["holder"] == "next"
        stale.ttl_s = 0.4
        stale._thread.start()  # its next renewal finds the lease taken
        stale._thread.join(timeout=10)
        with pytest.raises(LeaseLost, match="taken over by run next"):
            stale.check()


def test_a_lease_of_a_dead_process_on_this_machine_is_taken_at_once(store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    gone = Lease(store, 600, "killed")
    store.write_if(LEASE_KEY, {**gone.record(time.time()), "pid": int(dead.stdout)}, None)
    with Lease(store, 600, "next").take(0):  # not 10 minutes later: its holder is known dead
        assert store.read_versioned(LEASE_KEY)[0]["holder"] == "next"
