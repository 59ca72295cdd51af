"""Parse one source in a child process, bounded in time and memory.

Parsers read hostile input: pypdf bounds its decompression but not its time (its text
extraction is quadratic in a page's text pieces), and a PDF can make it hold gigabytes. So
``load_document`` sends the source to a child process that parses it under an address-space
ceiling (``RLIMIT_AS`` = ``parse_memory_bytes``, set in the child), while the parent waits at
most ``parse_timeout_s`` and then kills the child's process group. The document comes back
failed, naming the setting; the next document gets a fresh child.

Children are persistent: one per calling thread at a time (a Ray worker's parse task, the CLI's
driver), started on first use with the parser imports done once, so a document costs a pickle
round trip (about a millisecond), not an interpreter start (about 0.4 s). A child is a plain
``python -c`` subprocess speaking length-prefixed pickles over its stdin/stdout, not
multiprocessing: spawn and forkserver children import the parent's ``__main__`` again (in a Ray
worker: Ray's own worker script), fork would copy a multi-threaded Ray worker, and a
ProcessPoolExecutor cannot stop a task that is already running.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import math
import os
import pickle
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from pipelines.ingest.limits import IngestLimits
from pipelines.records import DocKind, Document, SourceRef

Parse = Callable[[SourceRef, IngestLimits], Document]

START_TIMEOUT_S = 120.0  # interpreter start and imports; not counted in parse_timeout_s
ALARM_GRACE_S = 60  # a child whose parent died stops itself this long after its time limit
COLLECT_ABOVE_BYTES = 64 * 1024 * 1024  # a child this much larger than at its start collects garbage
_HEADER = struct.Struct("!Q")
_READY = b"ready"
_DOC_KIND: dict[str, DocKind] = {"pdf": "pdf", "text": "text", "repo": "repo", "archive": "repo"}
_CHILD_CODE = "import sys; sys.path[:0] = sys.argv[1:]; from pipelines.ingest.sandbox import child_main; child_main()"


class _Timeout(Exception):
    pass


class _Died(Exception):
    """The child exited (or closed its output) without answering; ``str()`` says how."""


def parse_bounded(parse: Parse, ref: SourceRef, limits: IngestLimits) -> Document:
    """``parse(ref, limits)`` in a child process within the limits' time and memory; never raises for the input.

    ``parse`` must be a module-level function (the child imports it by name). With both
    ``parse_timeout_s`` and ``parse_memory_bytes`` 0 it runs here, unbounded.
    """
    if not limits.parse_timeout_s and not limits.parse_memory_bytes:
        kind, value = _run(parse, ref, limits)
        return _document(kind, value, ref, limits)
    try:
        child = _take()
    except (OSError, _Died, _Timeout) as e:
        return Document.failed(ref, _DOC_KIND[ref.kind], f"parse sandbox: cannot start the parser process: {e}")
    try:
        kind, value = child.call(pickle.dumps((parse, ref, limits)), limits.parse_timeout_s or None)
    except _Timeout:
        child.kill()
        kind, value = "timeout", None
    except _Died as e:
        child.kill()
        kind, value = "died", str(e)
    except BaseException:  # KeyboardInterrupt, a bug here: the child's state is unknown, never reuse it
        child.kill()
        raise
    if kind == "memory":  # the child exits after a MemoryError: its heap may be fragmented
        child.kill()
    else:
        _give_back(child)
    return _document(kind, value, ref, limits)


def _document(kind: str, value: object, ref: SourceRef, limits: IngestLimits) -> Document:
    if kind == "doc":
        assert isinstance(value, Document)
        return value
    if kind == "timeout":
        reason = f"parse time limit: exceeded parse_timeout_s={limits.parse_timeout_s:g}"
    elif kind == "memory":
        reason = f"parse memory limit: exceeded parse_memory_bytes={limits.parse_memory_bytes}"
        if not limits.parse_memory_bytes:  # unbounded, in this process: the machine ran out
            reason = "parse memory limit: out of memory (parse_memory_bytes=0: no ceiling)"
    elif kind == "died":
        reason = f"parse failed: the parser process died ({value})"
        if limits.parse_memory_bytes:  # e.g. an allocation failing where Python cannot raise MemoryError
            reason += f"; it may have hit parse_memory_bytes={limits.parse_memory_bytes}"
    else:
        reason = f"parse failed: {value}"
    return Document.failed(ref, _DOC_KIND[ref.kind], reason)


def _run(parse: Parse, ref: SourceRef, limits: IngestLimits) -> tuple[str, object]:
    """The parse as ``(kind, value)``: ("doc", Document), ("memory", None) or ("error", description)."""
    try:
        return "doc", parse(ref, limits)
    except MemoryError:
        return "memory", None
    except Exception as e:  # noqa: BLE001 - loaders return failed documents; this is a last resort
        first = str(e).strip().partition("\n")[0]
        return "error", f"{type(e).__name__}: {first}"[:200]


# --- the parent's side ---------------------------------------------------------------------


class _Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", _CHILD_CODE, *(os.path.abspath(p) for p in sys.path)],  # "" = our cwd
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # its own process group: a kill takes its subprocesses (git) too
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout.fileno()
        self.owner = os.getpid()  # the process that may talk to it
        self.context = _context()  # what it inherited; it parses as if it ran here only while that holds
        with contextlib.suppress(AttributeError, OSError):  # Linux: fewer wakeups for a large document
            import fcntl

            fcntl.fcntl(self._out, fcntl.F_SETPIPE_SZ, 1 << 20)
        try:
            if bytes(self._read(START_TIMEOUT_S)) != _READY:
                raise _Died("no ready message")
        except BaseException:
            self.kill()
            raise

    def call(self, request: bytes, timeout: float | None) -> tuple[str, object]:
        try:
            self._in.write(_HEADER.pack(len(request)) + request)
            self._in.flush()
        except OSError as e:  # a broken pipe: it died since its last answer
            raise _Died(self._exit_status()) from e
        kind, value = pickle.loads(self._read(timeout))
        return kind, value

    def _read(self, timeout: float | None) -> memoryview:
        """One message, or _Timeout / _Died; the deadline covers the whole message."""
        deadline = None if timeout is None else time.monotonic() + timeout
        buf = bytearray()
        need = _HEADER.size
        with selectors.DefaultSelector() as sel:
            sel.register(self._out, selectors.EVENT_READ)
            while len(buf) < need:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise _Timeout
                if not sel.select(left):
                    continue
                chunk = os.read(self._out, 1 << 20)
                if not chunk:
                    raise _Died(self._exit_status())
                buf += chunk
                if need == _HEADER.size and len(buf) >= need:
                    need += _HEADER.unpack_from(buf)[0]
        return memoryview(buf)[_HEADER.size :]  # no copy: a document can be 100 MB

    def _exit_status(self) -> str:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "output closed"
        if rc < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-rc).name}"
        return f"exit status {rc}"

    def kill(self) -> None:
        if self.owner != os.getpid():  # a forked copy of the owner: the child is not ours to kill
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self._in.close()
        self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]

    def close(self) -> None:
        """Ask it to exit (end of input); kill it if it does not."""
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]


_idle: list[_Child] = []
_lock = threading.Lock()


def _take() -> _Child:
    with _lock:
        idle = _idle.pop() if _idle else None
    if idle is not None and idle.proc.poll() is None and idle.context == _context():
        return idle
    if idle is not None:  # ended since (killed from outside), or environment / cwd changed (S3 settings)
        idle.kill()
    return _Child()  # outside the lock: other threads need not wait for a start


def _context() -> tuple[str | None, dict[str, str]]:
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # deleted
        cwd = None
    return cwd, dict(os.environ)


def _give_back(child: _Child) -> None:
    with _lock:
        _idle.append(child)


def shutdown() -> None:
    """End the idle children (they also end by themselves when this process exits)."""
    with _lock:
        children = list(_idle)
        _idle.clear()
    for c in children:
        c.close()


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    for c in _idle:  # the parent's children: close our copies of the pipes, leave them running
        with contextlib.suppress(OSError):
            c._in.close()
            c.proc.stdout.close()  # type: ignore[union-attr]
    _idle.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)


# --- the child's side ----------------------------------------------------------------------


def child_main() -> None:
    """Serve parse requests from stdin until it closes; answers go to the original stdout."""
    import pipelines.ingest  # noqa: F401 - the parsers, imported once before "ready"

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() goes to stderr, never into the answers
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    inp = sys.stdin.buffer
    baseline = _address_space()
    _send(out, _READY)
    while (request := _recv(inp)) is not None:
        parse, ref, limits = pickle.loads(request)
        _set_memory_ceiling(limits.parse_memory_bytes)
        if limits.parse_timeout_s:  # default action: the process ends, even inside C code
            signal.alarm(math.ceil(limits.parse_timeout_s) + ALARM_GRACE_S)
        kind, value = _run(parse, ref, limits)
        try:
            answer = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            kind, value = "memory", None
            answer = pickle.dumps((kind, value))
        del value
        try:
            _send(out, answer)
        except BrokenPipeError:  # the parent is gone (killed, or gave up on us): leave quietly
            os._exit(0)
        signal.alarm(0)
        if kind == "memory":
            return
        del answer
        # pypdf's objects hold reference cycles: a big parse stays in memory until the cycle
        # collector runs, and would count against the next document's ceiling.
        size = _address_space()
        if baseline is None or size is None or size - baseline > COLLECT_ABOVE_BYTES:
            gc.collect()


def _address_space() -> int | None:
    """This process's virtual size (what RLIMIT_AS bounds), or None where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _set_memory_ceiling(n: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = hard if n == 0 or (hard != resource.RLIM_INFINITY and n > hard) else n
    with contextlib.suppress(ValueError, OSError):  # macOS does not enforce RLIMIT_AS
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _send(out, data: bytes) -> None:  # noqa: ANN001 - a binary file
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def _recv(inp) -> bytes | None:  # noqa: ANN001 - a binary file
    head = inp.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(head)
    data = inp.read(n)
    return data if len(data) == n else None
