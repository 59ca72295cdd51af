"""Create one RayJob from a manifest and wait for it to end: the nightly CronJob's container.

    python infra/k8s/launch_rayjob.py /etc/longctx/rayjob.yaml

Talks to the Kubernetes API with the pod's service-account token, using only the standard library and
PyYAML (both in the project image), so the schedule needs no kubectl image. Runs never overlap: while an
earlier RayJob carrying the manifest's labels is still active (its launcher pod may have been lost), this
run is skipped; the next run resumes the work. Exit status: 0 when the Ray job succeeded or the night was
skipped, 1 when it failed, was stopped or deleted, 2 on a bad manifest.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API_SERVER = "https://kubernetes.default.svc"
ENDED = {"Complete", "Failed", "ValidationFailed"}  # KubeRay's final jobDeploymentStatus values
RETRY_HTTP = {429, 500, 502, 503, 504}
POLL_S = 60.0


def active(rayjob: dict[str, Any]) -> bool:
    """Holding, or about to hold, a cluster: every state but the final ones (a new RayJob has none yet)."""
    return (rayjob.get("status") or {}).get("jobDeploymentStatus", "") not in ENDED


def exit_code(rayjob: dict[str, Any]) -> int | None:
    """None while the RayJob is active; then 0 if its Ray job succeeded, else 1."""
    if active(rayjob):
        return None
    return 0 if rayjob["status"].get("jobStatus") == "SUCCEEDED" else 1


def label_selector(manifest: dict[str, Any]) -> str:
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    if manifest.get("kind") != "RayJob" or not labels:
        raise ValueError("expected a RayJob manifest with metadata.labels (they find earlier runs)")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def transient(e: Exception) -> bool:
    """Worth asking again: the API server restarting or throttling, not a refusal (403) or a bad request."""
    if isinstance(e, urllib.error.HTTPError):
        return e.code in RETRY_HTTP
    return isinstance(e, urllib.error.URLError | TimeoutError | ConnectionError)


class Kube:
    """The three calls the launcher needs, in the pod's own namespace."""

    def __init__(self, account: Path = SERVICE_ACCOUNT, server: str = API_SERVER):
        self.account, self.server = account, server
        self.namespace = (account / "namespace").read_text().strip()
        self.tls = ssl.create_default_context(cafile=str(account / "ca.crt"))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        token = (self.account / "token").read_text().strip()  # the kubelet rotates it: read it every time
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.server + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, context=self.tls, timeout=30) as response:
            return json.load(response)

    def _rayjobs(self) -> str:
        return f"/apis/ray.io/v1/namespaces/{self.namespace}/rayjobs"

    def list(self, selector: str) -> list[dict[str, Any]]:
        return self._call("GET", f"{self._rayjobs()}?labelSelector={urllib.parse.quote(selector)}")["items"]

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", self._rayjobs(), manifest)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"{self._rayjobs()}/{name}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise


def launch(
    kube: Any,
    manifest: dict[str, Any],
    poll_s: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> int:
    """Skip if an earlier run is active, else create the RayJob and follow it to its end; the exit status."""
    earlier = [j["metadata"]["name"] for j in kube.list(label_selector(manifest)) if active(j)]
    if earlier:
        log(f"skipped: RayJob {', '.join(earlier)} is still active; the next run resumes what is left")
        return 0
    name = kube.create(manifest)["metadata"]["name"]
    log(f"created RayJob {name}")
    while True:
        sleep(poll_s)
        try:
            rayjob = kube.get(name)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:  # HTTPError is a URLError
            if not transient(e):
                raise
            log(f"cannot read RayJob {name} now ({e}); trying again")
            continue
        if rayjob is None:
            log(f"RayJob {name} was deleted before it ended")
            return 1
        code = exit_code(rayjob)
        if code is not None:
            status = rayjob["status"]
            why = f": {status['message']}" if status.get("message") else ""
            log(f"RayJob {name} {status['jobDeploymentStatus']}, Ray job {status.get('jobStatus') or 'never started'}{why}")
            return code


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        manifest = yaml.safe_load(Path(argv[1]).read_text())
        label_selector(manifest)
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as e:
        print(f"error: {argv[1]}: {e}", file=sys.stderr)
        return 2
    return launch(Kube(), manifest, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
