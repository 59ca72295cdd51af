"""The ``longctx`` command line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from jobs.units import duration, usd
from pipelines.chat import Llama31Chat, reasoning_budget
from pipelines.cost import DEFAULT_GPU_HOUR_PRICE, ApiCost, ApiPrices, CostAssumptions, PresetCost
from pipelines.packer import DEFAULT_MAX_MODEL_LEN, PackSettings
from pipelines.plan import failed_record, plan_documents, window_record
from pipelines.sources import SourceError, list_sources
from pipelines.tokenizer import TokenizerError, llama3_tokenizer
from pipelines.user_schema import SchemaError, resolve_schema
from schemas import BUILTIN

# Plain help (click's): it wraps at any width; rich's boxed panels cut option names at 80 columns.
app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Read long documents into schema-valid JSON with Llama 3.1.",
)
schemas_app = typer.Typer(help="The extraction schemas.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(schemas_app, name="schemas")
out = Console()
err = Console(stderr=True)

MAX_SKIPPED_SHOWN = 10


def say_error(message: str) -> None:
    # escaped: a message may hold brackets (pip install 'longctx[vllm]') that rich would take for markup
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    say_error(message)
    return typer.Exit(2)


@app.command()
def plan(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, archives or git checkouts.")],
    schema: Annotated[
        str,
        typer.Option(help="auto (repo for repositories, paper for the rest), a built-in, module:Class, or a JSON Schema."),
    ] = "auto",
    max_model_len: Annotated[
        int | None, typer.Option(min=256, help="The model's context length; default: the GGUF's, else 131072.")
    ] = None,
    max_output_tokens: Annotated[int | None, typer.Option(min=1, help="Default: derived from the schema.")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Model directory or tokenizer.model; default: the packaged Llama 3.1 one.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A GGUF file, a model directory or a named model (smollm2, qwen2.5-coder-1.5b): "
            "pack with its own tokenizer and chat template instead."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per window, per line.")] = False,
    cost_line: Annotated[
        bool, typer.Option("--cost", help='With --json: one more line at the end, the cost estimate ({"cost": ...}).')
    ] = False,
    dump: Annotated[Path | None, typer.Option(help="Write each window's exact prompt (text and token ids) here.")] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="S3-compatible store (MinIO, ...); default: AWS, or $AWS_ENDPOINT_URL.")
    ] = None,
    gpu_hour_price: Annotated[
        float,
        typer.Option(min=0, help="USD per GPU-hour for the cost estimate; the default is an assumption, set yours."),
    ] = DEFAULT_GPU_HOUR_PRICE,
    api_prices: Annotated[
        Path | None,
        typer.Option(help="A JSON price table for hosted APIs' batch rates, instead of the built-in one (see README)."),
    ] = None,
) -> None:
    """Show how every document packs into prompt windows, and what running them on vLLM
    would cost. Needs no model."""
    from pipelines.cost import API_PRICES, PriceFileError, api_costs, cost_record, load_api_prices, run_cost
    from pipelines.gguf_model import GGUFError, gguf_chat
    from pipelines.hf_model import model_dir_chat, model_dir_context
    from pipelines.model_files import ModelFileError, model_file_name, model_path

    if model and tokenizer:
        raise fail("give --model (a GGUF file) or --tokenizer, not both")
    from pipelines.job import check_schemas, schema_runs

    try:
        check_schemas([schema])
        prices = load_api_prices(api_prices) if api_prices else API_PRICES
        refs, ignored = list_sources(sources, s3_endpoint_url)
        if model and Path(model).is_dir():
            chat, context = model_dir_chat(model), model_dir_context(model)
        elif model:
            chat = gguf_chat(str(model_path(model)), model_file_name(model))
            context = chat.tokenizer.vocab.context_length
        else:
            chat, context = Llama31Chat(llama3_tokenizer(tokenizer)), None
    except (SchemaError, SourceError, TokenizerError, GGUFError, ModelFileError, PriceFileError) as e:
        raise fail(str(e)) from None
    max_model_len = max_model_len or context or DEFAULT_MAX_MODEL_LEN
    settings = PackSettings(max_model_len, max_output_tokens, reasoning_budget(chat, None))  # as the engines pack
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
    totals = {"documents": 0, "failed": 0, "windows": 0, "prompt_tokens": 0}
    # Long names and reasons fold onto the next line instead of being cut at the terminal's width.
    table = Table(
        *(Column(h, overflow="fold") for h in ("document", "status", "tokens", "windows", "prompt tokens per window")), box=None
    )
    skipped: list[tuple[str, str, str]] = []
    windows_tokens: list[tuple[int, int]] = []  # (prompt, output budget) of every window: the cost estimate's input
    plans = (p for spec, group in schema_runs([schema], refs) for p in plan_documents(group, spec, chat, settings))
    for p in plans:
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
        windows_tokens += [(w.prompt_tokens, w.max_output_tokens) for w in windows]
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
    # The vllm presets run Llama 3.1: the estimate holds for windows packed with its tokenizer.
    assumptions = CostAssumptions(gpu_hour_price=gpu_hour_price)
    costs = run_cost(windows_tokens, assumptions) if model is None and windows_tokens else []
    apis = api_costs(windows_tokens, prices)
    if as_json:
        for s in ignored:
            print(json.dumps({"source": s.path, "status": "ignored", "reason": s.reason}))
        if costs and cost_line:  # opt-in: readers of the window lines expect a source on each
            print(json.dumps({"cost": cost_record(costs, assumptions, apis, prices)}))
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
    if costs:
        _print_cost(costs, assumptions, apis, prices)
    elif model:
        out.print(f"cost: not estimated (the vllm presets run Llama 3.1; these windows are packed for {model})", style="dim")


def _print_cost(costs: list[PresetCost], a: CostAssumptions, apis: list[ApiCost], prices: ApiPrices) -> None:
    table = Table("preset", "GPUs a replica", "prefill", "decode (at most)", "GPU time", "USD",
                  title="cost on vLLM, H100 80 GB (estimate, in GPU time)", box=None)  # fmt: skip
    for c in costs:
        hours = (c.prefill_gpu_hours, c.decode_gpu_hours, c.gpu_hours)
        table.add_row(c.preset, str(c.gpus_per_replica), *(duration(h * 3600) for h in hours), usd(c.dollars))
    out.print(table)
    out.print(f"  {a.gpu_hour_price:.2f} USD a GPU-hour (--gpu-hour-price); prefill at {a.mfu:.0%} of peak FLOP/s,", style="dim")
    out.print(f"  decode at {a.bandwidth_use:.0%} of HBM bandwidth, each window spending its whole output budget", style="dim")
    hosted = Table("hosted API, batch rate", "USD", title=f"the same tokens on hosted APIs (prices of {prices.date})", box=None)
    for c in apis:
        hosted.add_row(c.model, usd(c.dollars))
    out.print(hosted)


def _span(kind: str, units: list) -> str:
    if kind == "pdf":
        return f"pages {units[0]}-{units[-1]}" if len(units) > 1 else f"page {units[0]}"
    if kind == "repo":
        return f"{len(units)} files" if len(units) > 1 else str(units[0])
    return "text"


@app.command()
def run(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, archives, git checkouts, s3:// objects or prefixes.")],
    out_dir: Annotated[str, typer.Option("--out", help="Where results and manifests go: a folder or s3://bucket/prefix.")],
    schema: Annotated[
        list[str],
        typer.Option(
            help="auto (repo for repositories, paper for the rest), a built-in, module:Class, or a JSON Schema; repeatable."
        ),
    ] = ["auto"],  # noqa: B006
    engine: Annotated[
        str, typer.Option(help="auto, llamacpp (embedded CPU), openai (an OpenAI-compatible server) or vllm (Ray Data LLM).")
    ] = "auto",
    model: Annotated[
        str | None,
        typer.Option(
            help="The engine's model: llamacpp, a GGUF file or smollm2 (default), qwen2.5-coder-1.5b; openai, the served name."
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="openai: the server, e.g. http://host:8000/v1 (implies --engine openai).")
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(help="openai: the served model's tokenizer: llama-3.1 (default), llama-3.1:DIR, gguf:FILE, hf:DIR."),
    ] = None,
    engine_option: Annotated[
        list[str] | None, typer.Option(help="Any other engine setting as key=value (YAML value); repeatable.")
    ] = None,
    max_model_len: Annotated[int | None, typer.Option(min=256, help="Context length; default: the engine's.")] = None,
    max_output_tokens: Annotated[int | None, typer.Option(min=1, help="Default: derived from the schema.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Inference actors (engines) to run.")] = 1,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting a local one.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Also redo documents whose stored result failed.")] = False,
    wait_for_lease: Annotated[
        float, typer.Option(min=0, help="Seconds to wait while another run writes to --out; default: refuse at once.")
    ] = 0,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="S3-compatible store (MinIO, ...); default: AWS, or $AWS_ENDPOINT_URL.")
    ] = None,
) -> None:
    """Extract one schema-valid JSON result per document."""
    from pipelines.job import JobError, parse_setting

    try:
        options = dict(parse_setting(o, "--engine-option") for o in engine_option or [])
    except JobError as e:
        raise fail(str(e)) from None
    options |= {k: v for k, v in (("base_url", base_url), ("tokenizer", tokenizer)) if v is not None}
    data = {
        "sources": sources,
        "output": out_dir,
        "schemas": schema,
        "engine": {
            "name": engine,
            "model": model,
            "max_model_len": max_model_len,
            "concurrency": concurrency,
            "options": options,
        },  # fmt: skip
        "packing": {"max_output_tokens": max_output_tokens},
        "s3": {"endpoint_url": s3_endpoint_url},
        "run": {"retry_failed": retry_failed, "wait_for_lease_s": wait_for_lease},
    }
    run_job(data, "options", address or "local")


def run_job(data: dict, origin: str, address: str | None) -> None:
    """Validate, prepare and execute a job given as plain data; one clear line on any bad setting."""
    from pipelines.job import JobError, prepare, validate_job

    try:
        job = prepare(validate_job(data, origin))
    except JobError as e:
        raise fail(str(e)) from None
    from jobs.runner import RayStartError, execute  # imports Ray: only once the job is known to be good
    from pipelines.engines import EngineError
    from pipelines.lease import LeaseHeld
    from pipelines.run import RunStopped
    from pipelines.storage import OutputError

    try:
        reports = execute(job, out, address)
    except (EngineError, RayStartError, LeaseHeld) as e:  # before anything was written
        raise fail(str(e)) from None
    except RunStopped as e:
        counts = e.report.counts()
        done = f"{counts['ok'] + counts['partial'] + counts['failed']} written, {counts['not_reached']} not reached"
        where = f"manifest {e.report.manifest}" if e.report.manifest else "no manifest"
        again = "run the same command again to do the rest"
        if str(e) == "interrupted":
            err.print(f"interrupted: {done} ({where}); {again}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        say_error(str(e))
        err.print(f"run stopped: {done} ({where}); {again}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OutputError as e:  # before the run started: the output cannot be read or cleaned up
        raise fail(str(e)) from None
    except KeyboardInterrupt:  # before the run started
        raise fail("interrupted before any document was written") from None
    # A failed document is recorded, not fatal: the run itself succeeded; unless no engine ever started.
    for r in reports:
        if r.engine_down:
            failed = r.counts()["failed"]
            say_error(r.engine_down)
            again = "fix the engine, then run again with --retry-failed"
            err.print(f"{failed} documents recorded failed (manifest {r.manifest}); {again}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)


@app.command("eval")
def evaluate(
    results: Annotated[Path, typer.Argument(help="A run's output folder (holding <schema>/...json).")],
    gold: Annotated[Path, typer.Argument(help="Gold JSON files at the same relative paths as their results.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per document, per line.")] = False,
) -> None:
    """Score results against gold JSON, field by field (see pipelines/evaluate.py for the rules)."""
    from pipelines.evaluate import field_means, score_document

    for folder in (results, gold):
        if not folder.is_dir():
            raise fail(f"{folder} is not a folder")
    golds = sorted(p for p in gold.rglob("*.json") if p.is_file())
    if not golds:
        raise fail(f"no gold files (*.json) under {gold}")
    documents, missing = [], []
    for path in golds:
        rel = path.relative_to(gold).as_posix()
        want = _read_json(path)
        got = _read_json(results / rel) if (results / rel).is_file() else None
        if not isinstance(want, dict) or (got is not None and not isinstance(got, dict)):
            raise fail(f"{path if not isinstance(want, dict) else results / rel}: expected a JSON object")
        if got is None:
            missing.append(rel)
        schema = resolve_schema(got["schema"]).json_schema if got and got.get("schema") in BUILTIN else None
        scores = score_document(got.get("data") if got else None, want, schema)
        documents.append(scores)
        if as_json:
            status = got.get("status") if got else "missing"
            print(json.dumps({"gold": rel, "status": status, "fields": {s.field: round(s.score, 4) for s in scores}}))
    if as_json:
        return
    means = field_means(documents)
    table = Table("field", "mean score", box=None)
    for field, mean in means.items():
        table.add_row(field, f"{mean:.3f}")
    out.print(table)
    overall = sum(means.values()) / len(means) if means else 0.0
    out.print(f"{len(golds)} documents, {len(means)} fields, mean {overall:.3f}"
              + (f"; no result for {len(missing)}: {', '.join(missing)}" if missing else ""), highlight=False)  # fmt: skip


@app.command("table")
def table_command(
    out_dir: Annotated[str, typer.Argument(help="A run's output: a folder or s3://bucket/prefix.")],
    schema: Annotated[str, typer.Option(help="Whose results: a built-in, module:Class, or a JSON Schema.")] = "paper",
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="S3-compatible store (MinIO, ...); default: AWS, or $AWS_ENDPOINT_URL.")
    ] = None,
) -> None:
    """Build or bring up to date OUT/<schema>/_table/, the Parquet table of the schema's results
    (every run does this itself; this is for outputs written before there were tables)."""
    from pipelines.lease import LeaseHeld, hold_output
    from pipelines.storage import OutputError, StorageError, open_storage
    from pipelines.table import update_table

    try:
        spec = resolve_schema(schema)
        store = open_storage(out_dir, s3_endpoint_url)
        if not store.versions(f"{spec.name}/"):  # checked before the lease: a mistyped path gets no _runs/ folder
            raise fail(f"no {spec.name} results under {out_dir}: no table written")
        with hold_output(store, ttl_s=600, wait_s=0):  # a run writing the same results would race the table
            done = update_table(store, spec, store.versions(f"{spec.name}/"))
    except (SchemaError, StorageError, LeaseHeld, OutputError) as e:
        raise fail(str(e)) from None
    if done is None:
        raise fail(f"no {spec.name} results under {out_dir}: no table written")
    out.print(
        f"{done.folder}: {done.rows:,} rows in {done.parts} parts ({done.rewritten} rewritten)", highlight=False, soft_wrap=True
    )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise fail(f"{path}: {e.strerror if isinstance(e, OSError) else 'not valid JSON'}") from None


@app.command()
def submit(
    config: Annotated[Path, typer.Argument(help="The job spec (YAML), inside the working directory.")],
    address: Annotated[str, typer.Option(help="The cluster's Job API, e.g. http://HEAD:8265.", envvar="RAY_ADDRESS")],
    working_dir: Annotated[Path, typer.Option(help="Uploaded as the job's working directory (the project).")] = Path("."),
    follow: Annotated[bool, typer.Option(help="Print the job's logs until it ends; exit non-zero if it failed.")] = True,
) -> None:
    """Submit ``python -m jobs.extract --config CONFIG`` to a Ray cluster's Job API."""
    from pipelines.job import JobError, read_job_file, validate_job

    try:
        validate_job(read_job_file(config), str(config))  # a bad spec fails here, not on the cluster
    except JobError as e:
        raise fail(str(e)) from None
    wd = working_dir.resolve()
    try:
        rel = config.resolve().relative_to(wd).as_posix()
    except ValueError:
        raise fail(f"{config} is not inside the working directory {wd}: the job could not read it there") from None
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
        job_id = client.submit_job(
            entrypoint=f"python -m jobs.extract --config {shlex.quote(rel)}",
            # Ray leaves out what .gitignore names (.venv, out/); git's own data is not needed either.
            runtime_env={"working_dir": str(wd), "excludes": [".git"]},
        )
    except AuthenticationError:
        hint = "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token (ray get-auth-token on the head)"
        raise fail(f"cannot submit to {address}: the cluster requires a token: {hint}") from None
    except (ConnectionError, RuntimeError, ValueError) as e:  # unreachable, refused, or too large an upload
        raise fail(f"cannot submit to {address}: {' '.join(str(e).split())[:300]}") from None
    out.print(f"submitted job {job_id}", highlight=False)
    if not follow:
        out.print(f"follow it with: ray job logs --follow --address {address} {job_id}", highlight=False)
        return
    raise typer.Exit(follow_job(client, job_id))


def follow_job(client, job_id: str) -> int:
    """Stream the job's logs to stdout; 0 once it succeeded, 1 if it failed or was stopped."""
    import asyncio

    from ray.job_submission import JobStatus

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        err.print(f"stopped following; the job goes on (ray job stop {job_id} stops it)", highlight=False)
        return 130
    status = client.get_job_status(job_id)
    colour = "green" if status == JobStatus.SUCCEEDED else "red"
    out.print(f"job {job_id}: [{colour}]{status.value}[/{colour}]", highlight=False)
    return 0 if status == JobStatus.SUCCEEDED else 1


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
