"""llama.cpp's own tokenizer, the reference our GGUF tokenizers are checked against."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4)
def _vocab(path: str):
    import llama_cpp

    return llama_cpp.Llama(path, vocab_only=True, verbose=False)


def llama_cpp_tokenize(path: str, text: str, special: bool) -> list[int]:
    """``special``: marker strings in the text become their tokens (as for a rendered template)."""
    return _vocab(path).tokenize(text.encode("utf-8"), add_bos=False, special=special)
