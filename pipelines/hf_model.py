"""A model directory's own tokenizer and chat template, as Hugging Face lays
them out: ``tokenizer.json`` (a ``tokenizers`` tokenizer) and
``tokenizer_config.json`` (``chat_template``, ``bos_token``, ``eos_token``).
What the packer counts with for a model that vLLM or a server runs from
that directory (``--tokenizer hf:DIR``, ``plan --model DIR``).

The tokenizer's added tokens (``<|eot_id|>``, ``<|im_end|>``, ...) are taken
out of it and kept as markers by id: ``encode`` turns a marker string inside
a document into ordinary text, so a document cannot close its turn (DESIGN 5).
The template is rendered as for a GGUF (``TemplateChat``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pipelines.gguf_model import GGUFError, TemplateChat


class HFTokenizer:
    def __init__(self, data: dict[str, Any], name: str):
        from tokenizers import Tokenizer

        self.name = name
        self.markers = {a["content"]: a["id"] for a in data.get("added_tokens", [])}
        self._by_id = {i: t for t, i in self.markers.items()}
        self._tok = Tokenizer.from_str(json.dumps({**data, "added_tokens": []}))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        """Markers written as their text, the rest decoded in runs."""
        out, run = [], []
        for i in ids:
            if i in self._by_id:
                out += [self._tok.decode(run), self._by_id[i]]
                run = []
            else:
                run.append(i)
        return "".join([*out, self._tok.decode(run)])


def _token_text(value: Any) -> str:
    """``bos_token`` and ``eos_token`` are strings, or objects with a ``content``."""
    if isinstance(value, dict):
        return value.get("content") or ""
    return value or ""


def _template(config: dict[str, Any]) -> str | None:
    """``chat_template`` is a string, or a list of named templates (the "default" one)."""
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default")
    return template


@functools.lru_cache(maxsize=4)
def model_dir_chat(path: str) -> TemplateChat:
    """The chat format of a model directory (cached per directory)."""
    root = Path(path)
    try:
        data = json.loads((root / "tokenizer.json").read_text())
        config = json.loads((root / "tokenizer_config.json").read_text())
    except OSError as e:
        raise GGUFError(f"{path}: not a model directory ({e.filename and Path(e.filename).name}: {e.strerror})") from None
    except ValueError as e:
        raise GGUFError(f"{path}: a tokenizer file is not valid JSON ({e})") from None
    template = _template(config)
    if not template:
        raise GGUFError(f"{path}: no chat_template in tokenizer_config.json")
    tokenizer = HFTokenizer(data, root.name)
    return TemplateChat(tokenizer, template, _token_text(config.get("bos_token")), _token_text(config.get("eos_token")), path)


def model_dir_context(path: str) -> int | None:
    """The context length in the directory's ``config.json`` (``max_position_embeddings``), if any."""
    try:
        value = json.loads((Path(path) / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and value > 0 else None
