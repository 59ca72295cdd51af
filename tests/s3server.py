"""A real S3-compatible HTTP server on loopback for the tests: moto's S3
application behind werkzeug, with server-side faults on demand.

Faults are answered by the server, over the socket, exactly as S3 answers
them (status and XML error body), so the client's own retry logic is what
the tests exercise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

# Dummy credentials only: nothing here can reach a real account.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MESSAGES = {"SlowDown": "Please reduce your request rate.", "InternalError": "We encountered an internal error."}


@dataclass
class _Fault:
    remaining: int
    status: int
    code: str
    method: str | None
    path_contains: str | None
    after: int = 0  # matching requests served normally before the faults begin


class S3Server:
    def __init__(self) -> None:
        self._app = DomainDispatcherApplication(create_backend_app)
        self._faults: list[_Fault] = []
        self._holds: list[tuple[tuple[str, str], threading.Event]] = []
        self._lock = threading.Lock()
        self.faults_served = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=MotoRequestHandler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def fail_next(
        self,
        count: int,
        status: int = 503,
        code: str = "SlowDown",
        method: str | None = None,
        path_contains: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next ``count`` matching requests (after the next ``after``) with this error instead of serving them."""
        with self._lock:
            self._faults.append(_Fault(count, status, code, method, path_contains, after))

    def clear_faults(self) -> None:
        """No faults, no held requests, and the fault counter back at zero."""
        with self._lock:
            self._faults.clear()
            self.faults_served = 0
            for _, gate in self._holds:
                gate.set()
            self._holds.clear()

    def hold(self, method: str, path_contains: str) -> threading.Event:
        """Keep matching requests waiting (a stalled read) until the returned event is set."""
        gate = threading.Event()
        with self._lock:
            self._holds.append(((method, path_contains), gate))
        return gate

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and f.method in (None, method) and (f.path_contains is None or f.path_contains in path):
                    if f.after > 0:
                        f.after -= 1
                        continue
                    f.remaining -= 1
                    self.faults_served += 1
                    return f
        return None

    def _wsgi(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        with self._lock:
            self.requests.append((method, path))
            gates = [g for (m, p), g in self._holds if m == method and p in path]
        for gate in gates:
            gate.wait(timeout=600)
        fault = self._take_fault(method, path)
        if fault is None:
            return self._app(environ, start_response)
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # drain the request body
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
            f"<Message>{MESSAGES.get(fault.code, fault.code)}</Message></Error>"
        ).encode()
        reason = {403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}.get(fault.status, "Error")
        start_response(f"{fault.status} {reason}", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


def upload_tree(client, bucket: str, prefix: str, root) -> list[str]:
    """Copy every file under the local folder ``root`` to ``s3://bucket/prefix`` (as
    ``aws s3 sync`` would, .git included); returns the keys written."""
    from pathlib import Path

    keys = []
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink():
            key = prefix + p.relative_to(root).as_posix()
            client.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())
            keys.append(key)
    return keys


def client_with_bucket(url: str, bucket: str):
    """A boto3 client for the server at ``url``, with ``bucket`` created if it is not there yet."""
    from pipelines.s3 import s3_client

    client = s3_client(url)
    if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=bucket)
    return client
