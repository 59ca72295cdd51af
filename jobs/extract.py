"""The Ray job entry point: ``python -m jobs.extract --config job.yaml``.

Runs on whatever cluster ``ray.init()`` connects to: the job's own cluster
when submitted (``longctx submit`` or ``ray job submit``), else a local one.
Flags override the file's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli import fail, run_job

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="The job spec (YAML); see the README's job spec reference.")],
    source: Annotated[list[str] | None, typer.Option(help="Replace the spec's sources; repeatable.")] = None,
    output: Annotated[str | None, typer.Option(help="Replace the spec's output location.")] = None,
    schema: Annotated[list[str] | None, typer.Option(help="Replace the spec's schemas; repeatable.")] = None,
    engine: Annotated[str | None, typer.Option(help="Replace engine.name.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Replace engine.concurrency.")] = None,
    retry_failed: Annotated[bool | None, typer.Option(help="Replace run.retry_failed.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Any setting as dotted.key=value (YAML value); repeatable.")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Ray address; default: ray.init()'s own (the job's cluster).")] = None,
) -> None:
    """Run the extraction job described by a job spec file."""
    from pipelines.job import JobError, parse_setting, read_job_file

    overrides = {
        "sources": source, "output": output, "schemas": schema, "engine.name": engine,
        "engine.concurrency": concurrency, "run.retry_failed": retry_failed,
    }  # fmt: skip
    overrides = {k: v for k, v in overrides.items() if v is not None}  # flags left out change nothing
    try:
        overrides |= dict(parse_setting(s, "--set") for s in set_ or [])  # --set key=null does set null
        data = read_job_file(config, overrides)
    except JobError as e:
        raise fail(str(e)) from None
    run_job(data, str(config), address)


if __name__ == "__main__":
    app()
