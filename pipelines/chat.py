"""Llama 3.1's chat format, rendered as text and as token ids.

Special tokens enter only here, by id. Every piece of message text is encoded
as ordinary text, so a document holding ``<|eot_id|>`` cannot end its turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipelines.tokenizer import Llama3Tokenizer

# The official Llama 3.1 template puts these lines at the top of every system
# message; "26 Jul 2024" is its default date. A fixed date keeps prompts, and so
# the prefix cache and fingerprints, the same from day to day.
LLAMA31_SYSTEM_PREAMBLE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

# A part of a message: text to encode, or ids encoded earlier from exactly that text.
Part = str | tuple[str, list[int]]

# Reasoning models (a chat template that knows "</think>": DeepSeek-R1 distills, QwQ, Qwen3)
# write a <think> block before their answer. Its default bound, in tokens, and what its
# tags and the line break after it take on top.
DEFAULT_REASONING_TOKENS = 1024
REASONING_FRAME_TOKENS = 16


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]:
        """Ordinary text only: never produces a special token."""
        ...

    def count(self, text: str) -> int: ...

    def decode(self, ids: list[int]) -> str: ...


class ChatFormat(Protocol):
    """A model's chat template over its tokenizer: what the packer counts with."""

    tokenizer: Tokenizer
    # True when ids of separately encoded parts (joined at a newline followed by
    # a non-space) equal one encode of the joined text; else the packer leaves slack.
    exact_parts: bool
    # Ids that end the model's turn: decoding stops at them.
    stop_ids: tuple[int, ...]
    # The model thinks in a <think> block before it answers; its generation prompt may open it.
    thinks: bool
    opens_thinking: bool

    def render(self, system: str, user: str) -> str: ...

    def encode(self, system: str, user_parts: Sequence[Part]) -> list[int]: ...


class Llama31Chat:
    """One system and one user message, then the assistant header the answer starts from.

    The user message may come in parts that were encoded separately. That is
    exact only where each boundary between parts is a newline followed by a
    non-space character: Llama 3's pre-tokenizer always splits there. The
    packer builds its parts that way, and tests check it against one encode.
    """

    exact_parts = True
    thinks = opens_thinking = False

    def __init__(self, tokenizer: Llama3Tokenizer):
        self.tokenizer = tokenizer
        sp = tokenizer.special
        self._bos = sp["<|begin_of_text|>"]
        self._start, self._end, self._eot = sp["<|start_header_id|>"], sp["<|end_header_id|>"], sp["<|eot_id|>"]
        # <|eom_id|> and <|end_of_text|> also stop (the Instruct model's generation_config lists all three)
        self.stop_ids = (self._eot, sp["<|eom_id|>"], sp["<|end_of_text|>"])

    def _header(self, role: str) -> list[int]:
        return [self._start, *self.tokenizer.encode(role), self._end]

    def render(self, system: str, user: str) -> str:
        return (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            f"{LLAMA31_SYSTEM_PREAMBLE}{system.strip()}<|eot_id|>"
            f"<|start_header_id|>user<|end_header_id|>\n\n{user.strip()}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )

    def encode(self, system: str, user_parts: Sequence[Part]) -> list[int]:
        """Ids of ``render(system, "".join(part texts))``; the joined user text must be stripped."""
        enc = self.tokenizer.encode
        ids = [self._bos, *self._header("system"), *enc("\n\n" + LLAMA31_SYSTEM_PREAMBLE + system.strip())]
        ids += [self._eot, *self._header("user")]
        for i, part in enumerate(user_parts):
            if isinstance(part, str):
                ids += enc("\n\n" + part if i == 0 else part)
            else:
                if i == 0:
                    raise ValueError("the first user part must be text: it is joined to the header's newlines")
                ids += part[1]
        ids += [self._eot, *self._header("assistant"), *enc("\n\n")]
        return ids


def reasoning_budget(chat: ChatFormat, requested: int | None) -> int | None:
    """Tokens the model may think before its answer: None for a model that does not think,
    else ``requested`` (0: an empty <think> block) or the default."""
    if not chat.thinks:
        return None
    return DEFAULT_REASONING_TOKENS if requested is None else requested
