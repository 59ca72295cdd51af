"""The job spec: everything one extraction job needs, as a validated file.

``longctx run`` flags, ``python -m jobs.extract --config job.yaml`` and the
nightly schedule all become a ``JobSpec``, and ``prepare`` turns one into
ready parts (schemas, engine, storage, listed sources) or one clear
``JobError`` before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.engines import ENGINES, EngineConfig, EngineError, engine_config
from pipelines.ingest import IngestLimits
from pipelines.packer import PackSettings
from pipelines.records import Skipped, SourceRef
from pipelines.sources import SourceError, list_sources
from pipelines.storage import Storage, StorageError, open_storage
from pipelines.user_schema import SchemaError, resolve_schema
from schemas import SchemaSpec


class JobError(ValueError):
    """The job cannot start; the message is one line for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSpec(_Section):
    name: str = Field("auto", description="auto, or one of the engines")
    model: str | None = Field(None, description="the engine's model (llamacpp: a GGUF file or a named model)")
    max_model_len: int | None = Field(None, ge=256, description="context length; default: the engine's")
    concurrency: int = Field(1, ge=1, description="inference actors (engine replicas)")
    restarts: int = Field(2, ge=0, description="a batch whose engine failed is tried again on a fresh engine this many times")
    options: dict[str, Any] = Field(default_factory=dict, description="engine-specific settings")


class PackingSpec(_Section):
    max_output_tokens: int | None = Field(None, ge=1, description="default: derived from the schema's bounds")


class S3Spec(_Section):
    endpoint_url: str | None = Field(None, description="an S3-compatible store (MinIO, ...); default: AWS")


class RunSpec(_Section):
    retry_failed: bool = Field(False, description="also redo documents whose stored result failed")
    label: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="prefix of the run id, e.g. nightly")
    wait_for_lease_s: float = Field(0, ge=0, description="wait this long for another run on the same output, then refuse")
    lease_ttl_s: float = Field(600, ge=4, description="a run's lease on its output expires this long after its last renewal")


class JobSpec(_Section):
    sources: list[str] = Field(min_length=1, description="files, folders, archives, checkouts, s3:// objects or prefixes")
    output: str = Field(min_length=1, description="a folder or s3://bucket/prefix/")
    schemas: list[str] = Field(
        ["auto"],
        min_length=1,
        description="auto (repo for repositories, paper for the rest), built-in names, module:Class, or JSON Schema files",
    )
    engine: EngineSpec = EngineSpec()
    packing: PackingSpec = PackingSpec()
    limits: IngestLimits = IngestLimits()
    s3: S3Spec = S3Spec()
    run: RunSpec = RunSpec()


def read_job_file(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A YAML (or JSON) job file as data; ``overrides`` are dotted keys (``engine.name``) that win over it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise JobError(f"cannot read job file {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise JobError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise JobError(f"{path}: expected a mapping of settings at the top level")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise JobError(f"{path}: '{p}' must be a mapping")
        node[last] = value
    return data


def parse_setting(text: str, flag: str) -> tuple[str, Any]:
    """``engine.max_model_len=4096`` -> ("engine.max_model_len", 4096); the value is read as YAML."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise JobError(f"{flag} expects key=value, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise JobError(f"{flag} {key}: not a YAML value: {value!r}") from None


def validate_job(data: dict[str, Any], origin: str = "job") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise JobError(f"{origin}: {where}: {first['msg']}{more}") from None


AUTO_SCHEMA = "auto"
REPO_KINDS = ("repo", "archive")  # checkouts, S3 trees and .zip/.tar.gz files: read as repositories


def check_schemas(names: list[str]) -> None:
    """SchemaError for the first name that is not ``auto`` and does not resolve: before any listing."""
    for name in names:
        if name != AUTO_SCHEMA:
            resolve_schema(name)


def schema_runs(names: list[str], refs: list[SourceRef]) -> list[tuple[SchemaSpec, list[SourceRef]]]:
    """One run per schema, each over the sources it applies to: ``auto`` is ``repo`` for
    repositories and ``paper`` for the rest (one run when there are none of the other)."""
    runs: list[tuple[SchemaSpec, list[SourceRef]]] = []
    for name in dict.fromkeys(names):
        if name != AUTO_SCHEMA:
            runs.append((resolve_schema(name), refs))
            continue
        repos = [r for r in refs if r.kind in REPO_KINDS]
        others = [r for r in refs if r.kind not in REPO_KINDS]
        if others or not repos:
            runs.append((resolve_schema("paper"), others))
        if repos:
            runs.append((resolve_schema("repo"), repos))
    return runs


@dataclass(frozen=True)
class PreparedJob:
    job: JobSpec
    runs: list[tuple[SchemaSpec, list[SourceRef]]]  # each schema and the sources it runs over
    engine: EngineConfig
    engine_reason: str
    settings: PackSettings
    storage: Storage
    refs: list[SourceRef]
    ignored: list[Skipped]


def choose_engine(spec: EngineSpec, gpus: tuple[int, str] | None = None) -> tuple[str, str]:
    """The engine's name and why. ``gpus``: (count, where), by default those
    visible now. This runs before ray.init (the engine decides how prompts are
    packed), so it counts the Ray cluster's GPUs only when this process has
    already joined one, else this machine's: a driver on a head node without
    GPUs names the engine (vllm) in the job."""
    from pipelines.engines.vllm import visible_gpus, vllm_installed

    if spec.name != "auto":
        return spec.name, "chosen in the job"
    if spec.options.get("base_url"):
        return "openai", "auto: a server URL was given"
    count, where = gpus if gpus is not None else visible_gpus()
    if count and vllm_installed():
        return "vllm", f"auto: the vllm extra is installed and {count} GPU(s) are visible {where}"
    if count:
        why = f"{count} GPU(s) visible {where}, but the vllm extra is not installed: pip install 'longctx[vllm]'"
    elif vllm_installed():
        why = f"no GPU visible {where}; where the GPUs are on other nodes, set the engine to vllm"
    else:
        why = f"no server URL, no GPU visible {where}"
    return "llamacpp", f"auto: the embedded CPU engine ({why})"


def build_engine(spec: EngineSpec) -> tuple[EngineConfig, str]:
    name, why = choose_engine(spec)
    if twice := {"model", "max_model_len"} & set(spec.options):
        key = sorted(twice)[0]
        raise EngineError(f"engine option '{key}': set it as engine.{key} (--{key.replace('_', '-')}), not among the options")
    config = engine_config(name, model=spec.model, max_model_len=spec.max_model_len, **spec.options)
    if name == "openai":
        config = config.with_served_model()  # model_id names it in every result and fingerprint
    config.chat_format()  # fails now, with the install hint, if the engine's extra is missing
    return config, why


def prepare(job: JobSpec) -> PreparedJob:
    """Resolve and check every part of the job; JobError names the first problem."""
    if job.engine.name != "auto" and job.engine.name not in ENGINES:
        raise JobError(f"unknown engine '{job.engine.name}' (available: auto, {', '.join(ENGINES)})")
    try:
        check_schemas(job.schemas)
        engine, why = build_engine(job.engine)
        storage = open_storage(job.output, job.s3.endpoint_url)
        refs, ignored = list_sources(job.sources, job.s3.endpoint_url)
        runs = schema_runs(job.schemas, refs)
    except (SchemaError, EngineError, StorageError, SourceError) as e:
        raise JobError(str(e)) from None
    settings = PackSettings(
        max_model_len=engine.max_model_len,
        max_output_tokens=job.packing.max_output_tokens,
        reasoning_tokens=engine.reasoning_budget,
    )
    return PreparedJob(job, runs, engine, why, settings, storage, refs, ignored)
