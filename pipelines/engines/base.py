"""The engine contract: token-id prompts with a schema and a budget in,
completions with text, finish reason and token counts out.

An ``EngineConfig`` is small and picklable: it travels to every worker, gives
the chat format that prompts are packed with (cheap, no weights), and builds
the engine once per inference actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pipelines.chat import ChatFormat

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    prompt_ids: list[int]
    json_schema: dict[str, Any]
    max_tokens: int


@dataclass(frozen=True, slots=True)
class Completion:
    request_id: str
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None  # set when finish_reason == "error"
    constrained: bool = True  # False: the engine decoded without the schema (a server that refused it)
    tokens_estimated: bool = False  # True: the engine sent no counts; ours stand in
    reasoning: str | None = None  # a reasoning model's thinking, kept apart from the answer in ``text``


def error_completion(r: Request, message: str) -> Completion:
    """A request that failed, with a one-line reason."""
    return Completion(r.request_id, "", "error", len(r.prompt_ids), 0, error=" ".join(message.split())[:500])


def split_thinking(text: str) -> tuple[str, str]:
    """A reasoning model's output as (its thinking, its answer); no answer if it stopped thinking."""
    thought, _, answer = text.partition("</think>")
    return thought.removeprefix("<think>").strip(), answer.strip()


def check_reasoning_tokens(engine: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise EngineError(f"{engine}: reasoning_tokens must be a whole number >= 0, not {value!r}")


def request_problem(r: Request, context: int, context_name: str) -> str | None:
    """Why a request cannot run in a context of ``context`` tokens, or None."""
    if not r.prompt_ids or r.max_tokens < 1:
        return f"empty prompt or max_tokens={r.max_tokens}"
    if len(r.prompt_ids) + r.max_tokens > context:
        return f"prompt {len(r.prompt_ids)} + max_tokens {r.max_tokens} tokens exceed {context_name} {context}"
    return None


class Engine(Protocol):
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in order. Greedy, constrained by each
        request's JSON schema. A request that fails is an "error" completion;
        an engine that is dead raises EngineError (its windows fail with the reason)."""
        ...


class EngineConfig(Protocol):
    name: str  # "llamacpp", ...

    @property
    def model_id(self) -> str:
        """Names the model in results and fingerprints."""
        ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def batch_size(self) -> int:
        """Windows one engine works on at once; the graph hands it batches of this size."""
        ...

    @property
    def reasoning_budget(self) -> int | None:
        """Tokens a reasoning model may think before its answer (``chat.reasoning_budget``);
        None: the model does not think, or this engine has it answer at once."""
        ...

    def chat_format(self) -> ChatFormat:
        """The tokenizer and template prompts are packed with; no weights loaded."""
        ...

    def preflight(self, concurrency: int) -> None:
        """On the driver, before any work and before Ray starts: raise EngineError (one line naming the
        setting to change) for what can be known without loading weights."""
        ...

    def build(self) -> Engine: ...


class EngineError(RuntimeError):
    """An engine cannot be set up (missing extra, model file, bad settings)."""
