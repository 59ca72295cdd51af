"""The ``longctx`` command line."""

from __future__ import annotations

import json
import os

# Read by Ray when it is first imported. A local instance's workers run this
# very interpreter, so Ray's `uv run` hook, which copies the project and
# builds a second environment for them, is only cost.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.chat import Llama31Chat
from pipelines.engines import EngineError, engine_config
from pipelines.packer import DEFAULT_MAX_MODEL_LEN, PackSettings
from pipelines.plan import failed_record, plan_documents, window_record
from pipelines.sources import SourceError, list_sources
from pipelines.tokenizer import TokenizerError, llama3_tokenizer
from pipelines.user_schema import SchemaError, resolve_schema
from schemas import BUILTIN

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Read long documents into schema-valid JSON with Llama 3.1.",
)
schemas_app = typer.Typer(help="The extraction schemas.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
out = Console()
err = Console(stderr=True)

MAX_SKIPPED_SHOWN = 10


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def plan(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, archives or git checkouts.")],
    schema: Annotated[str, typer.Option(help="Built-in name, module:Class, or a JSON Schema file.")] = "paper",
    max_model_len: Annotated[int, typer.Option(min=256, help="The model's context length.")] = DEFAULT_MAX_MODEL_LEN,
    max_output_tokens: Annotated[int | None, typer.Option(min=1, help="Default: derived from the schema.")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Model directory or tokenizer.model; default: the packaged Llama 3.1 one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per window, per line.")] = False,
    dump: Annotated[Path | None, typer.Option(help="Write each window's exact prompt (text and token ids) here.")] = None,
) -> None:
    """Show how every document packs into prompt windows. Needs no model."""
    try:
        spec = resolve_schema(schema)
        refs, ignored = list_sources(sources)
        chat = Llama31Chat(llama3_tokenizer(tokenizer))
    except (SchemaError, SourceError, TokenizerError) as e:
        raise fail(str(e)) from None
    settings = PackSettings(max_model_len=max_model_len, max_output_tokens=max_output_tokens)
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
    totals = {"documents": 0, "failed": 0, "windows": 0, "prompt_tokens": 0}
    table = Table("document", "status", "tokens", "windows", "prompt tokens per window", box=None)
    skipped: list[tuple[str, str, str]] = []
    for p in plan_documents(refs, spec, chat, settings):
        doc = p.doc
        totals["documents"] += 1
        if p.packed is None:
            totals["failed"] += 1
            if as_json:
                print(json.dumps(failed_record(doc)))
            table.add_row(doc.rel_path, f"[red]{doc.status}[/red]: {doc.reason}", "", "", "")
            continue
        windows = p.packed.windows
        totals["windows"] += len(windows)
        totals["prompt_tokens"] += sum(w.prompt_tokens for w in windows)
        for w in windows:
            if as_json:
                print(json.dumps(window_record(doc, w)))
            if dump:
                (dump / f"{doc.doc_id}.{w.index}.txt").write_text(w.prompt_text)
                (dump / f"{doc.doc_id}.{w.index}.json").write_text(json.dumps({"token_ids": w.prompt_ids}))
        skipped += [(doc.rel_path, s.path, s.reason) for s in doc.skipped]
        n = len(doc.skipped)
        status = f"ok, {n} file{'s' * (n != 1)} skipped" if n else "ok"
        spans = ", ".join(f"{w.prompt_tokens:,} ({_span(doc.kind, w.units)})" for w in windows)
        table.add_row(doc.rel_path, status, f"{p.packed.document_tokens:,}", str(len(windows)), spans)
    if as_json:
        for s in ignored:
            print(json.dumps({"source": s.path, "status": "ignored", "reason": s.reason}))
        return
    out.print(table)
    for doc_path, path, reason in skipped[:MAX_SKIPPED_SHOWN]:
        out.print(f"  skipped {doc_path}: {path} ({reason})", style="dim", highlight=False)
    if len(skipped) > MAX_SKIPPED_SHOWN:
        out.print(f"  ... and {len(skipped) - MAX_SKIPPED_SHOWN} more skipped files (see --json)", style="dim")
    for s in ignored:
        out.print(f"  ignored {s.path} ({s.reason})", style="dim", highlight=False)
    out.print(
        f"{totals['documents']} documents ({totals['failed']} failed), {totals['windows']} windows, "
        f"{totals['prompt_tokens']:,} prompt tokens; max_model_len {max_model_len:,}"
        + (f"; prompts written to {dump}" if dump else ""),
        highlight=False,
    )


def _span(kind: str, units: list) -> str:
    if kind == "pdf":
        return f"pages {units[0]}-{units[-1]}" if len(units) > 1 else f"page {units[0]}"
    if kind == "repo":
        return f"{len(units)} files" if len(units) > 1 else str(units[0])
    return "text"


@app.command()
def run(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, archives or git checkouts.")],
    out_dir: Annotated[str, typer.Option("--out", help="Where results and manifests go: a folder or s3://bucket/prefix.")],
    schema: Annotated[str, typer.Option(help="Built-in name, module:Class, or a JSON Schema file.")] = "paper",
    engine: Annotated[str, typer.Option(help="auto, or llamacpp (embedded CPU engine).")] = "auto",
    model: Annotated[str | None, typer.Option(help="Model file for the engine (llamacpp: a GGUF).")] = None,
    max_model_len: Annotated[int | None, typer.Option(min=256, help="Context length; default: the engine's.")] = None,
    max_output_tokens: Annotated[int | None, typer.Option(min=1, help="Default: derived from the schema.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Inference actors (engines) to run.")] = 1,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting a local one.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Also redo documents whose stored result failed.")] = False,
) -> None:
    """Extract one schema-valid JSON result per document."""
    # Imported here: they pull in Ray, which `plan` and `schemas` do not need.
    from jobs.progress import RunProgress, print_summary
    from pipelines.graph import GraphSpec
    from pipelines.ingest import IngestLimits
    from pipelines.run import RunOptions, run_extraction
    from pipelines.storage import open_storage

    try:
        spec = resolve_schema(schema)
        refs, ignored = list_sources(sources)
        name, why = choose_engine(engine)
        config = engine_config(name, model_path=model, n_ctx=max_model_len)
        config.chat_format()  # fails early, with the install hint, if the extra is missing
        storage = open_storage(out_dir)
    except (SchemaError, SourceError, EngineError, ValueError) as e:
        raise fail(str(e)) from None
    settings = PackSettings(max_model_len=config.max_model_len, max_output_tokens=max_output_tokens)
    graph = GraphSpec(schema=spec, engine=config, settings=settings, limits=IngestLimits(), concurrency=concurrency)
    start_ray(address)
    try:
        with RunProgress(out) as progress:
            report = run_extraction(refs, graph, storage, RunOptions(retry_failed=retry_failed), ignored, progress)
    except KeyboardInterrupt:
        raise fail("interrupted: finished documents are saved; run the same command again to do the rest") from None
    finally:
        import ray

        ray.shutdown()
    # A failed document is recorded, not fatal: the run itself succeeded.
    print_summary(out, report, f"{config.name} ({why}), model {config.model_id}", storage.uri(spec.name))


def choose_engine(name: str) -> tuple[str, str]:
    if name == "auto":
        return "llamacpp", "auto: the embedded CPU engine; no other engine is available yet"
    return name, "chosen with --engine"


def start_ray(address: str | None) -> None:
    import logging

    import ray

    # "local" always starts a new instance, never joins one found on the machine.
    # Ray's start-up warnings are for cluster operators; errors still show.
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours shows documents, windows and tokens
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


@schemas_app.command("list")
def schemas_list() -> None:
    """The built-in schemas."""
    table = Table("name", "output budget", "description", box=None)
    for name in BUILTIN:
        spec = resolve_schema(name)
        table.add_row(name, f"{spec.max_output_tokens:,} tokens", spec.description)
    out.print(table)


@schemas_app.command("show")
def schemas_show(name: Annotated[str, typer.Argument(help="Built-in name, module:Class, or a JSON Schema file.")]) -> None:
    """Print a schema's JSON Schema."""
    try:
        spec = resolve_schema(name)
    except SchemaError as e:
        raise fail(str(e)) from None
    print(json.dumps(spec.json_schema, indent=2))
