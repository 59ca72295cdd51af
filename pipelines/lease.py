"""One run at a time per output: a lease object, ``_runs/_lease.json``.

Taken with a conditional create (S3: ``If-None-Match: *``; locally: a
compare-and-swap under a file lock), renewed by a background thread with a
conditional overwrite of the version the run itself wrote, released by one
more such overwrite that marks it expired (longctx never deletes: its IAM
policy grants no s3:DeleteObject). A lease that stopped being renewed past its expiry (a run
killed on another machine), or whose holder on this machine is gone, is taken
over with a conditional overwrite of exactly that version, so of two runs
taking it at once only one wins. A run that loses its lease stops before its
next write.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pipelines.storage import OutputError, Storage

LEASE_KEY = "_runs/_lease.json"
POLL_S = 2.0  # how often a waiting run looks again


class LeaseHeld(OutputError):
    """Another live run holds the output."""


class LeaseLost(OutputError):
    """This run's lease was taken over (it was not renewed in time)."""


def hold_output(storage: Storage, ttl_s: float, wait_s: float, on_wait=lambda held: None) -> Lease:
    return Lease(storage, ttl_s).take(wait_s, on_wait)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def holder_gone(record: dict[str, Any], now: float) -> bool:
    """Expired, or held by a process of this machine that no longer exists."""
    if record.get("expires_at_unix", 0) < now:
        return True
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        try:
            os.kill(record["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
    return False


class Lease:
    def __init__(self, storage: Storage, ttl_s: float, holder: str | None = None):
        self.storage, self.ttl_s = storage, ttl_s
        self.holder = holder or uuid.uuid4().hex[:12]  # names this command in messages and in the lease
        self.version: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="longctx-lease", daemon=True)

    def record(self, now: float) -> dict[str, Any]:
        return {
            "holder": self.holder, "host": socket.gethostname(), "pid": os.getpid(),
            "renewed_at": _iso(now), "expires_at": _iso(now + self.ttl_s), "expires_at_unix": now + self.ttl_s,
        }  # fmt: skip

    def take(self, wait_s: float, on_wait=lambda held: None) -> Lease:
        """Take the lease, waiting up to ``wait_s`` for a live holder to finish; LeaseHeld past that."""
        deadline = time.monotonic() + wait_s
        waited = False
        while True:
            now = time.time()
            self.version = self.storage.write_if(LEASE_KEY, self.record(now), None)
            if self.version:
                break
            current = self.storage.read_versioned(LEASE_KEY)
            if current is None:
                continue  # released in between: try again at once
            held, version = current
            if holder_gone(held, now):
                self.version = self.storage.write_if(LEASE_KEY, self.record(now), version)
                if self.version:
                    break
                continue  # another run took it over first
            if time.monotonic() >= deadline:
                raise LeaseHeld(
                    f"{self.storage.uri('')} is in use by another run ({held.get('holder')} on {held.get('host')}, pid "
                    f"{held.get('pid')}, lease renewed {held.get('renewed_at')}): wait for it with --wait-for-lease "
                    "SECONDS, or write to another --out"
                )
            if not waited:
                on_wait(held)
                waited = True
            time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                version = self.storage.write_if(LEASE_KEY, self.record(time.time()), self.version)
            except OutputError:
                continue  # the store is failing: try again; the lease lasts ttl_s
            if version is None:
                current = self.storage.read_versioned(LEASE_KEY)
                by = current[0].get("holder") if current else None
                self.lost = (
                    f"this run's lease on {self.storage.uri('')} was taken over by run {by}"
                    if by
                    else (f"this run's lease on {self.storage.uri('')} was removed")
                )
                return
            self.version = version

    def check(self) -> None:
        """LeaseLost once another run holds the output: no more writes from this one."""
        if self.lost:
            raise LeaseLost(f"{self.lost}: stopping before the next write")

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.version and not self.lost:
            released = {**self.record(time.time()), "released": True, "expires_at_unix": 0}
            with contextlib.suppress(OutputError):  # else it expires on its own
                self.storage.write_if(LEASE_KEY, released, self.version)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
