"""The live progress display and the final summary of ``longctx run``."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

import jobs
from jobs.units import duration
from pipelines.run import RunReport

MAX_SHOWN = 10  # failed and ignored sources listed in the summary; the run's manifest lists every one


class RunProgress:
    """Documents done of those to do, windows done, tokens per second, time left."""

    def __init__(self, console: Console):
        self.progress = Progress(
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("docs · {task.fields[windows]} windows · {task.fields[rate]} tok/s ·"),
            TimeElapsedColumn(),
            TextColumn("· left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("run", total=None, windows=0, rate="-")
        self.windows = 0
        self.tokens = 0
        self.t0 = time.monotonic()

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "start":
            self.progress.update(self.task, total=info["to_do"])
            self.t0 = time.monotonic()
        elif event == "window":
            self.windows += 1
            self.tokens += info["prompt_tokens"] + info["completion_tokens"]
            rate = self.tokens / max(time.monotonic() - self.t0, 1e-6)
            self.progress.update(self.task, windows=self.windows, rate=f"{rate:,.0f}")
        elif event == "document":
            self.progress.advance(self.task)


def print_summary(console: Console, report: RunReport, engine: str, results: str) -> None:
    counts = report.counts()
    table = Table(Column(), Column(overflow="fold"), title=f"run {report.run_id}", show_header=False, box=None)
    for status in ("ok", "partial", "failed", "skipped", "not_reached"):
        if counts[status] or status != "not_reached":
            table.add_row(f"documents {status.replace('_', ' ')}", str(counts[status]))
    table.add_row("prompt tokens", f"{sum(o.prompt_tokens for o in report.outcomes):,}")
    completion = f"{sum(o.completion_tokens for o in report.outcomes):,}"
    budget = report.tally.output_budget
    table.add_row("completion tokens", f"{completion} of a {budget:,} budget" if budget else completion)
    if e := report.evidence():
        table.add_row(
            "evidence",
            f"{e['verified']:,} values verified in the source, {e['unverified']:,} not found, {e['missing']:,} unquoted",
        )
    if gpu := report.tally.gpu_time():
        table.add_row("GPU time", gpu_time_line(gpu))
    table.add_row(
        "wall time", f"{time.monotonic() - jobs.STARTED:.1f} s (the command so far; the run {report.wall_seconds:.1f} s)"
    )
    table.add_row("engine", engine)
    table.add_row("manifest", report.manifest or "not written")
    if t := report.table:
        table.add_row("table", f"{t.folder} ({t.rows:,} rows; {t.rewritten} of {t.parts} parts rewritten)")
    if report.stopped:
        table.add_row("stopped", report.stopped)
    console.print(table)
    bad = [o for o in report.outcomes if o.status in ("failed", "partial")]
    for o in bad[:MAX_SHOWN]:
        console.print(f"  [red]{o.status}[/red] {o.source}: {o.reason}", highlight=False)
    if len(bad) > MAX_SHOWN:
        console.print(f"  ... and {len(bad) - MAX_SHOWN} more failed or partial (see the run's sources.jsonl)", highlight=False)
    for s in report.ignored[:MAX_SHOWN]:
        console.print(f"  ignored {s.path} ({s.reason})", style="dim", highlight=False)
    if len(report.ignored) > MAX_SHOWN:
        console.print(f"  ... and {len(report.ignored) - MAX_SHOWN} more ignored (see the manifest)", style="dim")
    if report.outcomes:
        console.print(f"results: {results}/", highlight=False)
    else:
        console.print("no documents to extract: no results written", highlight=False)


def gpu_time_line(gpu: dict[str, Any]) -> str:
    """plan's estimate for the windows that ran, beside the GPU time the run held."""
    prefill, at_budget = gpu["estimated_prefill_s"], gpu["estimated_decode_s_at_budget"]
    generated = gpu["estimated_decode_s_at_tokens_generated"]
    held = "not measured (the run stopped)" if gpu["held_gpu_s"] is None else duration(gpu["held_gpu_s"])
    return (
        f"held {held} (GPUs × the graph's wall time, model loading included); estimated "
        f"{duration(prefill + generated)} at the tokens generated, at most {duration(prefill + at_budget)} "
        f"(prefill {duration(prefill)}, at {gpu['assumptions']['mfu']:.0%} of an {gpu['gpu']}'s peak)"
    )
