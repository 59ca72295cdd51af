"""Reasoning models on the llamacpp engine: a bounded <think> block, then the schema's JSON.

No reasoning model's weights can be had here, so the real SmolLM2-135M is given a reasoning
model's chat template (a copy of its GGUF with new metadata, made by ``gguf-new-metadata``,
the gguf package's own tool). What is tested is ours: the template is recognised, the budget
covers the thinking, llama.cpp is held to the grammar, and the thinking is kept apart from
the answer, from the engine up to the stored result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.chat import DEFAULT_REASONING_TOKENS, REASONING_FRAME_TOKENS, Llama31Chat, reasoning_budget
from pipelines.engines import EngineError, Request, engine_config
from pipelines.engines.base import split_thinking
from pipelines.engines.llamacpp import LlamaCppConfig, thinking_grammar
from pipelines.gguf_model import gguf_chat
from pipelines.model_files import smollm2_path
from pipelines.packer import PackSettings, pack_document
from pipelines.records import Document, Unit
from pipelines.tokenizer import llama3_tokenizer
from pipelines.user_schema import resolve_schema
from schemas import builtin_schema
from tests.clirun import BRIEF, local_manifests, longctx

SPEC_BRIEF = resolve_schema(BRIEF)  # a small schema: short answers

# SmolLM2's ChatML, as a reasoning model writes it: earlier answers lose their thinking and,
# like DeepSeek-R1 distills' template, the generation prompt may open the <think> block.
TEMPLATE = (
    "{% for message in messages %}{% set content = message['content'] %}"
    "{% if message['role'] == 'assistant' and '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}OPEN{% endif %}"
)


def thinking_copy(folder: Path, opened: bool) -> Path:
    template = folder / "template.jinja"
    template.write_text(TEMPLATE.replace("OPEN", "{{ '<think>\n' }}" if opened else ""))
    out = folder / ("smollm2-opens-think.gguf" if opened else "smollm2-thinks.gguf")
    tool = Path(sys.executable).parent / "gguf-new-metadata"
    args = [str(tool), "--chat-template-file", str(template), str(smollm2_path()), str(out)]
    subprocess.run(args, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def opens(tmp_path_factory) -> Path:
    return thinking_copy(tmp_path_factory.mktemp("opens"), opened=True)


@pytest.fixture(scope="module")
def thinks(tmp_path_factory) -> Path:
    return thinking_copy(tmp_path_factory.mktemp("thinks"), opened=False)


def note(text: str) -> Document:
    return Document(doc_id="note", source="/data/note.md", rel_path="note.md", kind="text", units=[Unit(1, text)], meta={})


NOTE = "Quarterly report\n\nSales of sparse widgets rose 12% in the third quarter; the new plant opens in May."


def test_a_template_that_drops_think_blocks_is_a_reasoning_models(opens, thinks):
    opening, plain = gguf_chat(str(opens), "o"), gguf_chat(str(thinks), "t")
    assert opening.thinks and opening.opens_thinking
    assert plain.thinks and not plain.opens_thinking
    smol = gguf_chat(str(smollm2_path()), "smollm2")
    assert not smol.thinks and not smol.opens_thinking
    assert reasoning_budget(smol, 64) is None  # a model that does not think gets no budget
    assert reasoning_budget(opening, None) == DEFAULT_REASONING_TOKENS and reasoning_budget(opening, 0) == 0
    assert reasoning_budget(Llama31Chat(llama3_tokenizer()), None) is None
    # The prompt ends in the opened block, its marker-free text encoded as ordinary text.
    ids = opening.encode("system", ["hello"])
    assert opening.tokenizer.decode(ids).endswith("<|im_start|>assistant\n<think>\n")


def test_the_output_budget_covers_the_thinking(opens):
    chat = gguf_chat(str(opens), "o")
    spec = builtin_schema("paper")
    plain = pack_document(note(NOTE), spec, chat, PackSettings(8192))
    thinking = pack_document(note(NOTE), spec, chat, PackSettings(8192, reasoning_tokens=300))
    assert plain.windows[0].max_output_tokens == spec.max_output_tokens
    assert thinking.windows[0].max_output_tokens == spec.max_output_tokens + 300 + REASONING_FRAME_TOKENS


def test_grammar_and_split():
    g = thinking_grammar({"type": "object"}, 40, opened=False)
    assert 'start: "<think>" thought "</think>" "\\n\\n" answer' in g and "max_tokens=40" in g
    assert 'start: "</think>" "\\n\\n" answer' in thinking_grammar({"type": "object"}, 0, opened=True)
    assert split_thinking('<think>\nhm, a year.\n</think>\n\n{"a":1}') == ("hm, a year.", '{"a":1}')
    assert split_thinking("still thinking") == ("still thinking", "")


def test_bad_reasoning_budgets_are_one_line_errors():
    for engine in ("llamacpp", "vllm"):
        for bad in (-1, "many", 1.5, True):
            with pytest.raises(EngineError, match=f"{engine}: reasoning_tokens must be a whole number"):
                engine_config(engine, reasoning_tokens=bad)


@pytest.mark.parametrize("fixture", ["opens", "thinks"])
def test_the_model_thinks_within_its_bound_then_answers_valid_json(fixture, request):
    path = request.getfixturevalue(fixture)
    config = LlamaCppConfig(model=str(path), max_model_len=2048, n_threads=1, reasoning_tokens=40)
    chat = config.chat_format()
    window = pack_document(note(NOTE), SPEC_BRIEF, chat, PackSettings(2048, reasoning_tokens=config.reasoning_budget)).windows[0]
    engine = config.build()
    [c] = engine.generate([Request("r", window.prompt_ids, SPEC_BRIEF.decode_schema, window.max_output_tokens)])
    assert c.finish_reason == "stop", c
    assert c.reasoning and "</think>" not in c.reasoning and "<think>" not in c.reasoning
    assert len(chat.tokenizer.encode(c.reasoning)) <= 40 + 2  # the bound held (re-encoding may differ by a token)
    SPEC_BRIEF.validate(c.text)  # the answer alone, valid against the schema
    assert c.completion_tokens <= window.max_output_tokens

    # With a budget of 0 the block is closed at once: no thinking, the same kind of answer.
    quick = LlamaCppConfig(model=str(path), max_model_len=2048, n_threads=1, reasoning_tokens=0)
    [c0] = quick.build().generate([Request("r", window.prompt_ids, SPEC_BRIEF.decode_schema, window.max_output_tokens)])
    assert c0.finish_reason == "stop" and c0.reasoning == ""
    SPEC_BRIEF.validate(c0.text)


def test_run_keeps_the_thinking_in_the_result(opens, tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "report.md").write_text(NOTE + "\n")
    out = tmp_path / "out"
    model = ["--model", str(opens), "--schema", BRIEF, "--max-model-len", "2048"]
    proc = longctx("run", str(src), "--out", str(out), *model, "--engine-option", "reasoning_tokens=32")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "brief" / "report.md.json").read_text())
    assert result["status"] == "ok", result
    [w] = result["windows"]
    assert isinstance(w["reasoning"], str) and w["reasoning"]
    [m] = local_manifests(out)
    assert m["settings"]["reasoning_tokens"] == 32
    assert m["tokens"]["output_budget"] == SPEC_BRIEF.max_output_tokens + 32 + REASONING_FRAME_TOKENS

    # plan packs as run does: the default bound of a model that thinks is in every window's budget.
    plan = longctx("plan", str(src), *model, "--json")
    assert plan.returncode == 0, plan.stderr
    [record] = [json.loads(line) for line in plan.stdout.splitlines()]
    assert record["max_output_tokens"] == SPEC_BRIEF.max_output_tokens + DEFAULT_REASONING_TOKENS + REASONING_FRAME_TOKENS


def test_the_vllm_engine_gets_the_parser_and_each_request_the_budget(tmp_path: Path):
    from bench.model_dir import TINY_LLAMA3_CONFIG, write_model_dir
    from pipelines import vllm_stage

    thinking = write_model_dir(tmp_path / "r1", TINY_LLAMA3_CONFIG, thinking=True)
    plain = write_model_dir(tmp_path / "plain", TINY_LLAMA3_CONFIG)
    config = engine_config("vllm", model=str(thinking), reasoning_tokens=64)
    assert config.reasoning_budget == 64 and config.chat_format().opens_thinking
    settings = config.engine_settings()
    assert settings["reasoning_config"] == {"reasoning_parser": "deepseek_r1"}
    assert settings["structured_outputs_config"]["reasoning_parser"] == "deepseek_r1"
    assert "reasoning_config" not in engine_config("vllm", model=str(plain)).engine_settings()  # Llama 3.1: no thinking
    assert vllm_stage.sampling_params("{}", 100, [1], 64)["thinking_token_budget"] == 64
    assert "thinking_token_budget" not in vllm_stage.sampling_params("{}", 100, [1])

    # plan packs a model directory's windows as the vllm engine does: the thinking in the budget.
    src = tmp_path / "in"
    src.mkdir()
    (src / "report.md").write_text(NOTE + "\n")
    proc = longctx("plan", str(src), "--model", str(thinking), "--schema", BRIEF, "--max-model-len", "4096", "--json")
    assert proc.returncode == 0, proc.stderr
    [record] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["max_output_tokens"] == SPEC_BRIEF.max_output_tokens + DEFAULT_REASONING_TOKENS + REASONING_FRAME_TOKENS
