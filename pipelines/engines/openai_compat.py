"""An engine over any OpenAI-compatible server: vLLM serve, llama.cpp's
llama-server, llama-cpp-python's server, Ollama, LM Studio.

The prompt goes to ``/v1/completions`` by default, not to chat completions.
The packer has already rendered the whole chat (template, special tokens by
id) and counted it token-exactly; a raw completion is the only call where the
server decodes after exactly that prompt, with no template of its own. How
the prompt travels is ``prompt_as``:

- ``ids`` (default): the token ids themselves. What the server sees is what
  was counted, and document text can never turn into a control token
  (DESIGN 5). vLLM and llama-server take token-id prompts.
- ``text``: the ids decoded back to text (special tokens as their marker
  strings, the BOS left to the server), for servers that take only a string
  (llama-cpp-python's). The server re-tokenizes: counts can drift by a few
  tokens, and a marker string inside a document becomes a control token.
- ``messages``: ``/v1/chat/completions`` with the system and user messages cut
  back out of the prompt; the server applies its own template. For servers
  whose completions endpoint templates the prompt again (Ollama), or that
  have none (hosted APIs). Counts are approximate, and the caveat of ``text`` holds.

The server's own token counts (``usage``) are reported; the first disagreement
with the packer's count is logged.

Structured output (``structured``) depends on the server, as each reads the
schema from a different field of a completions request:

- ``response_format`` (default): ``{"type": "json_schema", ...}``: vLLM's completions,
  and the chat completions of vLLM, llama-server and Ollama.
- ``json_schema``: the schema as a top-level field: llama-server's completions
  (which ignore response_format), with llguidance's compact JSON.
- ``none``: unconstrained.

A server that refuses the schema field (HTTP 400/422) gets the request again
without it, and requests with that schema go unconstrained from then on
(logged once): infer.py validates every output anyway. vLLM's free
whitespace in JSON is a server setting (``disable_any_whitespace``).

Retries (429, 5xx, timeouts, connection errors, with exponential backoff
and Retry-After) are the openai client's. A request that still fails is an
"error" completion, a server that cannot be reached too (its windows fail with the
reason and the run goes on; ``--retry-failed`` redoes them); one that cannot be
reached at start fails the preflight.
The API key is read from ``OPENAI_API_KEY`` when the engine is built; the
config, which travels to every worker, never holds it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar, Literal

from pipelines.chat import ChatFormat, Llama31Chat
from pipelines.engines.base import Completion, EngineError, Request, error_completion, request_problem
from pipelines.tokenizer import llama3_tokenizer

log = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
LLAMA3_BOS = "<|begin_of_text|>"

# text, finish reason, (prompt, completion) tokens from the server's usage if it sent one
Reply = tuple[str, str | None, tuple[int, int] | None]


@dataclass(frozen=True)
class OpenAIConfig:
    """``tokenizer`` names the served model's tokenizer and chat format, which
    prompts are packed with: ``llama-3.1`` (the packaged Llama 3.1 tokenizer),
    ``llama-3.1:<dir>`` (a model directory's ``original/tokenizer.model``, or a
    rank file), ``gguf:<path>`` (the vocabulary of a GGUF file with the ChatML
    template, as SmolLM2's; needs the llamacpp extra) or ``gguf`` (the packaged
    SmolLM2) or ``hf:<dir>`` (a model directory's ``tokenizer.json`` and its
    ``tokenizer_config.json`` chat template: Qwen, Mistral, DeepSeek, ...)."""

    name: ClassVar[str] = "openai"

    base_url: str = "http://localhost:8000/v1"  # vllm serve's default
    model: str | None = None  # the served model name; None: the server's only model (with_served_model)
    tokenizer: str = "llama-3.1"
    max_model_len: int = 131072
    prompt_as: Literal["ids", "text", "messages"] = "ids"
    structured: Literal["response_format", "json_schema", "none"] = "response_format"
    concurrency: int = 8  # requests in flight per engine (per actor)
    timeout_s: float = 600.0  # per attempt: a 128K prefill behind others' takes tens of seconds
    max_retries: int = 5  # backoff 0.5, 1, 2, 4, 8 s

    def __post_init__(self) -> None:
        if self.prompt_as not in ("ids", "text", "messages"):
            raise EngineError(f"openai: prompt_as must be ids, text or messages: {self.prompt_as!r}")
        if self.structured not in ("response_format", "json_schema", "none"):
            raise EngineError(f"openai: structured must be response_format, json_schema or none: {self.structured!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise EngineError("openai: concurrency must be >= 1, max_retries >= 0 and timeout_s > 0")

    @property
    def model_id(self) -> str:
        return f"openai:{self.model}"

    @property
    def batch_size(self) -> int:
        return self.concurrency

    @property
    def reasoning_budget(self) -> None:
        return None  # not yet: a reasoning model answers at once, its <think> block left empty

    def chat_format(self) -> ChatFormat:
        kind, _, path = self.tokenizer.partition(":")
        if kind == "llama-3.1":
            return Llama31Chat(llama3_tokenizer(path or None))
        if kind == "gguf":
            from pipelines.engines.llamacpp import LlamaCppConfig

            return LlamaCppConfig(model=path or None).chat_format()
        if kind == "hf" and path:
            from pipelines.gguf_model import GGUFError
            from pipelines.hf_model import model_dir_chat

            try:
                return model_dir_chat(path)
            except GGUFError as e:
                raise EngineError(f"openai: tokenizer {self.tokenizer}: {e}") from None
        raise EngineError(
            f"openai: unknown tokenizer '{self.tokenizer}' (llama-3.1, llama-3.1:<dir>, gguf, gguf:<path>, hf:<model dir>)"
        )

    def with_served_model(self) -> OpenAIConfig:
        """This config naming its model: the one given, else the only one the server serves."""
        if self.model:
            return self
        served = served_models(self, client(self))
        if served is None:
            raise EngineError(f"openai: {self.base_url} does not list its models: name the served model with --model")
        if len(served) != 1:
            names = ", ".join(served)
            raise EngineError(f"openai: {self.base_url} serves {len(served)} models ({names}): choose one with --model")
        return replace(self, model=served[0])

    def preflight(self, concurrency: int) -> None:
        """The server answers, takes the key and serves the model."""
        check_server(self, client(self))

    def build(self) -> OpenAIEngine:
        return OpenAIEngine(self)


def client(config: OpenAIConfig):
    import openai

    return openai.OpenAI(
        base_url=config.base_url,
        # Servers without authentication ignore the header; the client wants some key.
        api_key=os.environ.get(API_KEY_ENV) or "none",
        timeout=config.timeout_s,
        max_retries=config.max_retries,
    )


def served_models(config: OpenAIConfig, api) -> list[str] | None:
    """The model names the server lists; None for a server without ``/models``."""
    import openai

    try:
        return [m.id for m in api.models.list().data]
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        raise EngineError(f"openai: {config.base_url} refused the key in {API_KEY_ENV} (HTTP {e.status_code})") from None
    except openai.APIStatusError:
        return None
    except openai.APIConnectionError as e:
        raise EngineError(f"openai: cannot reach {config.base_url}: {e}") from None


def check_server(config: OpenAIConfig, api) -> None:
    """Fail at start, not per request, when the server is down or does not serve the model."""
    served = served_models(config, api)  # None: a server without /models; requests will tell
    if served and config.model not in served:
        raise EngineError(f"openai: {config.base_url} does not serve '{config.model}' (served: {', '.join(served)}; set --model)")


class OpenAIEngine:
    def __init__(self, config: OpenAIConfig):
        self.config = config
        self.chat = config.chat_format()
        self.client = client(config)
        check_server(config, self.client)
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="openai-engine")
        self.refused: set[str] = set()  # schemas the server would not take as a constraint
        self.count_warned = False

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return list(self.pool.map(self._one, requests))

    def _one(self, r: Request) -> Completion:
        import openai

        n_prompt = len(r.prompt_ids)
        error = partial(error_completion, r)
        if problem := request_problem(r, self.config.max_model_len, "max_model_len"):
            return error(problem)
        key = json.dumps(r.json_schema, separators=(",", ":"))
        constraint = {} if key in self.refused else self._constraint(key)
        try:
            text, reason, usage, constrained = self._call_or_unconstrained(r, key, constraint)
        except openai.APITimeoutError:
            return error(f"no answer within {self.config.timeout_s:g} s, {self.config.max_retries} retries")
        except openai.APIConnectionError as e:  # down, after every retry: this window fails, the run goes on
            return error(f"cannot reach {self.config.base_url}: {e}")
        except openai.APIStatusError as e:
            first_line = next((line for line in e.message.splitlines() if line.strip()), "")  # no server tracebacks
            retryable = e.status_code == 429 or e.status_code >= 500  # the client retried these
            retried = f" after {self.config.max_retries} retries" if retryable and self.config.max_retries else ""
            return error(f"{first_line[:300]}{retried}")
        if reason not in ("stop", "length"):
            return error(f"the server finished with {reason!r}")
        prompt_tokens, completion_tokens = usage or (n_prompt, len(self.chat.tokenizer.encode(text)))
        if prompt_tokens != n_prompt and not self.count_warned:
            self.count_warned = True
            log.warning("the server counted %d prompt tokens, the packer %d: prompts are packed with tokenizer=%r; if %s "
                        "has another, pass --tokenizer llama-3.1:DIR (its model directory) or gguf:FILE (its GGUF)",
                        prompt_tokens, n_prompt, self.config.tokenizer, self.config.model)  # fmt: skip
        return Completion(r.request_id, text, reason, prompt_tokens, completion_tokens,
                          constrained=constrained, tokens_estimated=usage is None)  # fmt: skip

    def _call_or_unconstrained(self, r: Request, key: str, constraint: dict[str, Any]) -> tuple[str, str, Any, bool]:
        """The reply, and whether the schema constrained it."""
        import openai

        try:
            return (*self._call(r, constraint), bool(constraint))
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if not constraint:
                raise
            try:  # the server may not take the schema field: once more without it
                out = self._call(r, {})
            except openai.APIStatusError:
                raise e from None  # it was the request, not the field: report the first answer
            if key not in self.refused:
                self.refused.add(key)
                log.warning(
                    "%s refused %s (%s): this schema goes unconstrained", self.config.base_url, ", ".join(constraint), e.message
                )
            return (*out, False)

    def _call(self, r: Request, constraint: dict[str, Any]) -> Reply:
        common = {"model": self.config.model, "max_tokens": r.max_tokens, "temperature": 0.0, "extra_body": constraint or None}
        if self.config.prompt_as == "messages":
            system, user = split_messages(self.chat, detokenize(self.chat, r.prompt_ids))
            out = self.client.chat.completions.create(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], **common
            )
            text = out.choices[0].message.content or ""
        else:
            import openai

            prompt = r.prompt_ids if self.config.prompt_as == "ids" else text_prompt(self.chat, r.prompt_ids)
            # Posted as is: completions.create() walks every element of the body in Python, about
            # 1 s of CPU for a 128K-token prompt (bench/scale.py). The client's retries and timeout still apply.
            body = {"prompt": prompt, **{k: v for k, v in common.items() if k != "extra_body"}, **constraint}
            api = self.client  # the OpenAI client, named apart from the S3 calls tests/test_infra.py scans for
            out = api.post("/completions", body=body, cast_to=openai.types.Completion)
            text = out.choices[0].text
        usage = (out.usage.prompt_tokens, out.usage.completion_tokens) if out.usage else None
        return text, out.choices[0].finish_reason, usage

    def _constraint(self, key: str) -> dict[str, Any]:
        """The request fields that constrain the output to the schema (``key``: the schema as JSON)."""
        mode = self.config.structured
        if mode == "response_format":
            return {"response_format": {"type": "json_schema", "json_schema": {"name": "extraction", "schema": json.loads(key)}}}
        if mode == "json_schema":
            from pipelines.engines.llamacpp import compact

            return {"json_schema": compact(json.loads(key))}
        return {}


def detokenize(chat: ChatFormat, ids: list[int]) -> str:
    """Prompt ids back to text, special tokens written as their markers (both tokenizers do)."""
    return chat.tokenizer.decode(ids)


def text_prompt(chat: ChatFormat, ids: list[int]) -> str:
    # Servers add the BOS to a text prompt themselves (vLLM's add_special_tokens,
    # llama.cpp's add_bos_token); sent as text too, it would be there twice.
    return detokenize(chat, ids).removeprefix(LLAMA3_BOS)


def split_messages(chat: ChatFormat, prompt: str) -> tuple[str, str]:
    """(system, user) of a prompt rendered by ``chat.render``: the template rendered
    around two probe characters tells where each message starts and ends."""
    head, rest = chat.render("\x00", "\x01").split("\x00")
    sep, tail = rest.split("\x01")
    if not (prompt.startswith(head) and prompt.endswith(tail) and sep in prompt):
        raise EngineError("openai: the prompt does not have the chat format's template")
    # The system message is ours and holds no separator; the first one ends it.
    system, _, user = prompt[len(head) : len(prompt) - len(tail)].partition(sep)
    return system, user
