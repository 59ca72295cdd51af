"""A GGUF model's own tokenizer and chat template, read from the file's
metadata with ``gguf`` (llama.cpp's own reader), no weights loaded: what the
packer counts with for a model that llama.cpp runs.

Tokenizer. The vocabulary and merges become a byte-level BPE in Hugging Face
``tokenizers``, split first by the pattern llama.cpp uses for the file's
``tokenizer.ggml.pre`` (the model's own pre-tokenizer). Control tokens are
not registered as special: ``encode`` turns every marker string inside a
document into ordinary text, as llama.cpp's tokenize does with special
parsing off (DESIGN 5). Only GPT-2-style byte-level BPE vocabularies
(``tokenizer.ggml.model`` "gpt2": SmolLM, Qwen, Llama 3, Mistral's Tekken,
DeepSeek) are read; others are one clear error.

Chat template. The file's ``tokenizer.chat_template`` (Jinja) is rendered
with jinja2 for one system and one user message and the generation prompt.
Ids come from that rendering with the messages' text kept apart from the
template's own text: the template's control tokens enter by id, and the
messages are encoded as ordinary text, so a document cannot close its turn.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.chat import Part


class GGUFError(ValueError):
    """A GGUF file that cannot give a tokenizer or chat template; one line for the user."""


# tokenizer.ggml.pre → the split patterns of llama.cpp's pre-tokenizer of that name, applied in
# order (each splits the pieces of the one before). The same patterns are in each model's tokenizer.json.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Mistral's Tekken (Mistral Small 3, Nemo) as llama.cpp writes it: an upper-case letter is a
# letter but not a-z, a lower-case one a letter but not A-Z (the model's tokenizer.json uses
# Unicode's cases; the two split differently only inside words that mix cases with letters
# outside ASCII).
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt-2": (_GPT2,),
    "smollm": (r"\p{N}", _GPT2),  # digits one by one, then GPT-2's
    "starcoder": (r"\p{N}", _GPT2),
    "llama-bpe": (_LLAMA3,),
    "llama3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
    "deepseek-r1-qwen": (_QWEN2,),
    "tekken": (_TEKKEN,),
}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types that are markers, not text
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "longctx" / "gguf-vocab"


@dataclass(frozen=True, eq=False)
class GGUFVocab:
    """What a GGUF file says about its tokenizer and template."""

    path: str
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    chat_template: str | None
    context_length: int | None
    architecture: str


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


@functools.lru_cache(maxsize=4)
def read_vocab(path: str) -> GGUFVocab:
    """The tokenizer metadata of a GGUF file (no weights read). gguf's reader takes
    seconds over a vocabulary's hundred thousand strings, so what it finds is kept
    in the user's cache folder, keyed by the file's path, size and time."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise GGUFError(f"model file not found: {path}") from None
    key = hashlib.sha256(f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    cached = CACHE_DIR / f"{key}.json"
    try:
        return GGUFVocab(**json.loads(cached.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    vocab = _read(path)
    try:  # a cache that cannot be written costs time, not correctness
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(vocab)))
        tmp.replace(cached)
    except OSError:
        pass
    return vocab


def _read(path: str) -> GGUFVocab:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError):  # gguf's own messages are about numpy arrays, not the file
        raise GGUFError(f"{path}: not a readable GGUF file") from None
    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(f"{path}: tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2') vocabularies are read")
    pre = _field(reader, "tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"{path}: unknown pre-tokenizer {pre!r} (known: {', '.join(sorted(PRE_TOKENIZERS))})")
    arch = _field(reader, "general.architecture", "")
    return GGUFVocab(
        path=path,
        pre=pre,
        tokens=list(_field(reader, "tokenizer.ggml.tokens")),
        token_types=list(_field(reader, "tokenizer.ggml.token_type")),
        merges=list(_field(reader, "tokenizer.ggml.merges")),
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        chat_template=_field(reader, "tokenizer.chat_template"),
        context_length=_field(reader, f"{arch}.context_length"),
        architecture=arch,
    )


class GGUFTokenizer:
    """Encodes ordinary text with a GGUF file's own BPE; markers only by ``special_id``."""

    def __init__(self, vocab: GGUFVocab, name: str):
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

        self.vocab = vocab
        self.name = name
        ranks = {t: i for i, t in enumerate(vocab.tokens)}
        merges = [tuple(m.split(" ", 1)) for m in vocab.merges]
        tok = Tokenizer(models.BPE(ranks, merges, ignore_merges=vocab.pre in ("llama-bpe", "llama3")))
        splits = [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in PRE_TOKENIZERS[vocab.pre]]
        tok.pre_tokenizer = pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        self._tok = tok
        self.markers = {t: i for i, t in enumerate(vocab.tokens) if vocab.token_types[i] in (CONTROL, USER_DEFINED)}

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def special_id(self, marker: str) -> int:
        if marker not in self.markers:
            raise GGUFError(f"{marker!r} is not a special token of {self.name}")
        return self.markers[marker]


# Stand-ins for the messages while the template renders: its own text is split from theirs.
_SYSTEM, _USER = "\x00longctx-system\x00", "\x00longctx-user\x00"


class TemplateChat:
    """A model's chat template over its tokenizer (a GGUF's, or a model directory's:
    ``pipelines/hf_model.py``): one system and one user message and the generation
    prompt. Parts of the user message are joined and encoded together (``exact_parts``
    False: byte-level BPE does not always split at a newline, so the packer leaves slack).
    ``tokenizer``: ``encode`` for ordinary text, ``markers`` (special token text -> id)."""

    exact_parts = False

    def __init__(self, tokenizer, template: str | None, bos: str, eos: str, origin: str):
        self.tokenizer = tokenizer
        self.origin = origin
        if not template:
            raise GGUFError(f"{origin}: no chat template")
        self._template = _compile(template)
        self._render = functools.partial(self._template.render, bos_token=bos, eos_token=eos, add_generation_prompt=True)
        frame = self._frame()
        self._pieces = self._split(frame)
        self.stop_ids = (tokenizer.markers[eos],) if eos in tokenizer.markers else ()  # the model's end of turn
        # A template that strips "</think>" from earlier answers is a reasoning model's; some
        # (DeepSeek-R1 distills) open the block in the generation prompt.
        self.thinks = "</think>" in template
        self.opens_thinking = self.thinks and frame.rstrip().endswith("<think>")

    def _frame(self) -> str:
        text = self._render(messages=[{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER}])
        if text.count(_SYSTEM) != 1 or text.count(_USER) != 1:
            raise GGUFError(f"{self.origin}: the chat template does not show one system and one user message")
        return text

    def _split(self, frame: str) -> list[int | str]:
        """The rendered frame as marker ids and text, the stand-ins left in the text."""
        markers = sorted(self.tokenizer.markers, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(m) for m in markers))
        pieces: list[int | str] = []
        at = 0
        for m in pattern.finditer(frame):
            if m.start() > at:
                pieces.append(frame[at : m.start()])
            pieces.append(self.tokenizer.markers[m.group()])
            at = m.end()
        if at < len(frame):
            pieces.append(frame[at:])
        return pieces

    def render(self, system: str, user: str) -> str:
        return self._render(messages=[{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}])

    def encode(self, system: str, user_parts: Sequence[Part]) -> list[int]:
        """Ids of ``render(system, "".join(part texts))``: the template's markers by id,
        its text and the messages as ordinary text (earlier ids of parts are ignored)."""
        user = "".join(p if isinstance(p, str) else p[0] for p in user_parts).strip()
        ids: list[int] = []
        for piece in self._pieces:
            if isinstance(piece, int):
                ids.append(piece)
            else:
                ids += self.tokenizer.encode(piece.replace(_SYSTEM, system.strip()).replace(_USER, user))
        return ids


@functools.lru_cache(maxsize=8)
def _compile(source: str):
    """A chat template as Hugging Face renders them: sandboxed, trimmed blocks."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except TemplateError as e:
        raise GGUFError(f"the chat template does not parse: {e}") from None


@functools.lru_cache(maxsize=4)
def gguf_chat(path: str, name: str) -> TemplateChat:
    """A GGUF file's chat format: its tokenizer and template (cached per file)."""
    vocab = read_vocab(path)
    bos, eos = (vocab.tokens[i] if i is not None and 0 <= i < len(vocab.tokens) else "" for i in (vocab.bos_id, vocab.eos_id))
    template = vocab.chat_template
    if not template:
        raise GGUFError(f"{vocab.path}: no tokenizer.chat_template in the file")
    return TemplateChat(GGUFTokenizer(vocab, name), template, bos, eos, origin=vocab.path)
