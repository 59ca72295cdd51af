"""Run a prepared job on Ray: the one execution path behind ``longctx run``,
``python -m jobs.extract`` and the nightly schedule."""

from __future__ import annotations

import logging
import os

# Read by Ray when it is first imported. A local instance's workers run this
# very interpreter, so Ray's `uv run` hook, which copies the project and
# builds a second environment for them, is only cost.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402 - after the variable above
from rich.console import Console  # noqa: E402

from jobs.progress import RunProgress, print_summary  # noqa: E402
from pipelines.graph import GraphSpec  # noqa: E402
from pipelines.job import PreparedJob  # noqa: E402
from pipelines.run import RunOptions, RunReport, run_extraction  # noqa: E402


def start_ray(address: str | None) -> None:
    """``"local"``: a private instance on this machine (never one found running here);
    an address joins that cluster; None is ``ray.init()``'s own choice, which inside a
    submitted job is the job's cluster."""
    # Ray's start-up warnings are for cluster operators; errors still show.
    extra = {"include_dashboard": False} if address == "local" else {}
    ray.init(address=address, logging_level=logging.ERROR, **extra)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours shows documents, windows and tokens
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def execute(job: PreparedJob, console: Console, address: str | None = None) -> list[RunReport]:
    """One run per schema, in order; each writes its results and its own manifest.
    Raises KeyboardInterrupt through (finished documents are saved)."""
    options = RunOptions(retry_failed=job.job.run.retry_failed, label=job.job.run.label)
    engine = f"{job.engine.name} ({job.engine_reason}), model {job.engine.model_id}"
    reports = []
    start_ray(address)
    try:
        job.engine.preflight(job.job.engine.concurrency)  # EngineError: one line, nothing written
        for schema in job.schemas:
            graph = GraphSpec(schema, job.engine, job.settings, job.job.limits, job.job.engine.concurrency)
            with RunProgress(console) as progress:
                report = run_extraction(job.refs, graph, job.storage, options, job.ignored, progress)
            print_summary(console, report, engine, job.storage.uri(schema.name))
            reports.append(report)
    finally:
        ray.shutdown()
    return reports
