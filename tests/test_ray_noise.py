"""Ray's misleading C++ restart warning is kept off the terminal; every other line
written to file descriptor 2, and everything Python writes to stderr, still shows."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from jobs.ray_noise import is_noise

NOISE = (
    b"[2026-12-01 11:07:05,787 E 6340 6340] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(InferActor))'"
    b" and ID: 'd9e3ab44e12bc33746f0d5eb01000000' has constructor arguments in the object store and max_restarts > 0."
    b" If the arguments in the object store go out of scope or are lost, the actor restart will fail."
)
REAL_ERROR = b"[2026-12-01 11:07:05,787 E 6340 6340] core_worker.cc:812: Failed to register worker to Raylet: IOError"


def test_only_the_known_line_is_noise():
    assert is_noise(NOISE)
    assert not is_noise(REAL_ERROR)
    assert not is_noise(b"has constructor arguments in the object store")  # not from Ray's core worker


def test_native_writes_are_filtered_and_python_stderr_is_untouched():
    script = textwrap.dedent(
        f"""
        import os, sys
        from jobs.ray_noise import quiet_native_stderr
        with quiet_native_stderr():
            os.write(2, {NOISE!r} + b"\\n" + {REAL_ERROR!r} + b"\\nsplit ")
            os.write(2, b"across writes\\n" + {NOISE!r})
            print("from python", file=sys.stderr)
        os.write(2, b"after\\n")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert "constructor arguments" not in proc.stderr.decode()
    assert REAL_ERROR.decode() in lines and "split across writes" in lines
    assert "from python" in lines and lines[-1] == "after"
