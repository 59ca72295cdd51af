"""Known Ray log lines that mislead users, kept off the terminal.

Ray's core worker in the driver writes some lines from C++ straight to file
descriptor 2, past Python's logging. One comes at every run: Ray Data hands each
actor pool its transform by object reference, so the driver logs an ERROR that
"the actor restart will fail" if that object is lost (ray-project/ray#53727).
Ray Data holds the reference until the dataset is done, so it cannot be lost
while the run lasts; the line is noise, printed over the progress line.

While the filter is on, fd 2 is a pipe that a thread copies to the real stderr,
leaving out those lines only. Python's own ``sys.stderr`` is pointed at the real
stderr meanwhile, so rich and tracebacks still see the terminal.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NOISE = (re.compile(rb"core_worker\.cc:\d+: .* has constructor arguments in the object store and max_restarts > 0"),)


def is_noise(line: bytes) -> bool:
    return any(p.search(line) for p in NOISE)


def _copy(read_fd: int, write_fd: int) -> None:
    """Lines from the pipe to the real stderr, noise left out, until the pipe closes."""
    pending = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            _write(write_fd, b"".join(line + b"\n" for line in lines if not is_noise(line)))
    if not is_noise(pending):
        _write(write_fd, pending)


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the real stderr is gone (closed terminal): nothing left to show it on
        pass


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
    except (OSError, ValueError):  # no fd 2 (a detached process): nothing to filter
        yield
        return
    python_stderr = sys.stderr
    os.dup2(write_fd, 2)
    os.close(write_fd)
    copier = threading.Thread(target=_copy, args=(read_fd, real), name="ray-noise-filter", daemon=True)
    copier.start()
    # Whole lines at a time (a print's text and its newline in one write), so the copier's
    # lines and Python's never interleave within a line.
    sys.stderr = io.TextIOWrapper(
        os.fdopen(os.dup(real), "wb"),
        encoding=python_stderr.encoding or "utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(real, 2)  # closes the pipe's last write end: the copier drains it and stops
        copier.join(timeout=5)
        os.close(real)
