"""Run a prepared job on Ray: the one execution path behind ``longctx run``,
``python -m jobs.extract`` and the nightly schedule."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import ExitStack

# Read by Ray when it is first imported. A local instance's workers run this
# very interpreter, so Ray's `uv run` hook, which copies the project and
# builds a second environment for them, is only cost.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402 - after the variable above
from rich.console import Console  # noqa: E402

from jobs.progress import RunProgress, print_summary  # noqa: E402
from jobs.ray_noise import quiet_native_stderr  # noqa: E402
from pipelines.graph import GraphSpec  # noqa: E402
from pipelines.job import PreparedJob  # noqa: E402
from pipelines.lease import hold_output  # noqa: E402
from pipelines.run import RunOptions, RunReport, RunStopped, run_extraction  # noqa: E402
from pipelines.storage import one_line  # noqa: E402


class RayStartError(RuntimeError):
    """Ray did not start, or its cluster could not be joined; one line."""


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address that does not answer fails now: ray.init would retry it for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
        raise RayStartError(
            f"cannot join the Ray cluster at {address}: {why} (expected HOST:PORT of its head, e.g. 10.0.0.5:6379)"
        ) from None


def start_ray(address: str | None, attempts: int = 2) -> None:
    """``"local"``: a private instance on this machine (never one found running here),
    started again once if it fails (it can time out on a busy machine); an address
    joins that cluster; None is ``ray.init()``'s own choice, which inside a submitted
    job is the job's cluster."""
    # Ray's start-up warnings are for cluster operators; errors still show.
    extra = {"include_dashboard": False} if address == "local" else {}
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address, logging_level=logging.ERROR, **extra)
            break
        except Exception as e:  # noqa: BLE001 - ray.init raises ConnectionError, RuntimeError, TimeoutError, ...
            ray.shutdown()
            if address != "local":
                hint = "check --address, and that RAY_AUTH_TOKEN is the cluster's token where it requires one"
                where = address or "RAY_ADDRESS"
                raise RayStartError(f"cannot join the Ray cluster at {where}: {one_line(e)} ({hint})") from None
            if attempt == attempts:
                hint = "free some memory or CPU, or stop stale Ray processes (ray stop), then run again"
                raise RayStartError(f"Ray did not start on this machine ({attempts} tries): {one_line(e)} ({hint})") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours shows documents, windows and tokens
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def execute(job: PreparedJob, console: Console, address: str | None = None) -> list[RunReport]:
    """One run per schema, in order; each writes its results and its own manifest.
    RunStopped when a run ends early (finished documents are saved, the manifest says which were
    not reached), after its summary; EngineError and LeaseHeld before anything is written; RayStartError
    (Ray starts only once a run has documents to do) before any result is written."""
    run = job.job.run
    options = RunOptions(run.retry_failed, run.label)
    engine = f"{job.engine.name} ({job.engine_reason}), model {job.engine.model_id}"
    reports = []

    def waiting(held: dict) -> None:
        console.print(f"waiting for another run ({held.get('holder')} on {held.get('host')}) to finish with this output")

    if address not in (None, "local", "auto"):
        check_reachable(address)  # now, though Ray starts later: a wrong address is found before any work
    job.engine.preflight(job.job.engine.concurrency)  # EngineError: one line, nothing written
    with ExitStack() as stack:

        def start() -> None:
            """Ray, once, when a run has documents to do: an unchanged rerun needs none."""
            if not ray.is_initialized():
                start_ray(address)
                stack.callback(ray.shutdown)
                # Entered after ray.init: Ray's daemons would inherit its pipe and keep it open.
                stack.enter_context(quiet_native_stderr())  # Ray's misleading restart warning (jobs/ray_noise.py)

        lease = stack.enter_context(hold_output(job.storage, run.lease_ttl_s, run.wait_for_lease_s, waiting))
        for schema, refs in job.runs:
            spec = job.job.engine
            graph = GraphSpec(schema, job.engine, job.settings, job.job.limits, spec.concurrency, spec.restarts)
            try:
                with RunProgress(console) as progress:
                    report = run_extraction(refs, graph, job.storage, lease, options, job.ignored, progress, start)
            except RunStopped as e:
                print_summary(console, e.report, engine, job.storage.uri(schema.name))
                raise
            print_summary(console, report, engine, job.storage.uri(schema.name))
            reports.append(report)
    return reports
