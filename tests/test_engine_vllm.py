"""The vllm engine without a GPU: the real Ray Data LLM processor config, the
rows we feed it and the rows we make of its output, and the whole graph run
through Ray Data LLM's real Processor with a stand-in for its vLLM stage.
What needs vLLM and a GPU is in tests/test_bench_gpu.py (marked gpu)."""

from __future__ import annotations

import json
import logging
from array import array
from functools import partial

import pyarrow as pa
import pytest
from ray.data._internal.arrow_ops.transform_pyarrow import concat
from ray.data.llm import vLLMEngineProcessorConfig
from ray.llm._internal.batch.processor.base import Processor
from ray.llm._internal.batch.stages.base import StatefulStage, StatefulStageUDF
from ray.llm._internal.batch.stages.configs import (
    ChatTemplateStageConfig,
    DetokenizeStageConfig,
    TokenizerStageConfig,
    resolve_stage_config,
)

from pipelines import vllm_stage as S
from pipelines.chat import Llama31Chat
from pipelines.engines import ENGINES, EngineError, engine_config
from pipelines.engines import vllm as V
from pipelines.graph import GraphSpec, parse_and_pack, run_graph
from pipelines.infer import OUT_SCHEMA
from pipelines.ingest import IngestLimits
from pipelines.job import EngineSpec, choose_engine
from pipelines.packer import PackSettings
from pipelines.tokenizer import llama3_tokenizer
from schemas import builtin_schema
from tests.gpu import needs_gpu
from tests.pdfgen import lorem_pages, make_corrupt_pdf, make_pdf

SCHEMA = builtin_schema("repo")
GOOD = '{"name":null,"purpose":"p","languages":[],"components":[],"entry_points":[],"dependencies":[],"risks":[]}'
EOT = 128009
STOP = list(Llama31Chat(llama3_tokenizer()).stop_ids)  # <|eot_id|>, <|eom_id|>, <|end_of_text|>
# The fields of vLLM 0.29's SamplingParams and StructuredOutputsParams that we set (vllm/sampling_params.py).
SAMPLING_FIELDS = {"max_tokens", "temperature", "stop_token_ids", "structured_outputs"}
STRUCTURED_FIELDS = {"json", "regex", "choice", "grammar", "json_object", "disable_any_whitespace",
                     "disable_additional_properties", "whitespace_pattern", "structural_tag"}  # fmt: skip
# Row keys Ray 2.60's vLLM stage reads as input, or writes as output, besides the two we mean it to read.
VLLM_INPUT_KEYS = {"prompt", "model", "multimodal_data", "mm_processor_kwargs", "multimodal_uuids", "tokenization_kwargs",
                   "pooling_params"}  # fmt: skip
VLLM_OUTPUT = {
    "prompt": "", "prompt_token_ids": None, "num_input_tokens": 0, "generated_tokens": [], "generated_text": "",
    "num_generated_tokens": 0, "embeddings": None, "metrics": None, "logprobs": None, "prompt_logprobs": None,
}  # fmt: skip


def small_spec(engine=None, max_model_len: int = 4096) -> GraphSpec:
    engine = engine or V.VLLMConfig(max_model_len=max_model_len)
    return GraphSpec(SCHEMA, engine, PackSettings(max_model_len, 256), IngestLimits())


def item(path) -> dict:
    ref = {"uri": str(path), "root": str(path.parent), "rel_path": path.name, "kind": "pdf"}
    return {"ref": json.dumps(ref), "source_key": path.name}


def window_rows(tmp_path, pages: int = 16) -> list[dict]:
    make_pdf(tmp_path / "a.pdf", lorem_pages(pages, words_per_page=250))
    return parse_and_pack(item(tmp_path / "a.pdf"), small_spec())


# -- configuration --------------------------------------------------------------------------------------------------


def test_registered_and_built_from_job_options():
    assert ENGINES["vllm"] is V.VLLMConfig
    cfg = engine_config(
        "vllm", model="/models/llama", tokenizer="llama-3.1", max_model_len=32768, tensor_parallel_size=2, replicas=None
    )
    assert cfg.model_id == "vllm:/models/llama" and cfg.max_model_len == 32768 and cfg.gpus_per_replica == 2
    with pytest.raises(EngineError, match="not in an actor"):
        cfg.build()


def test_the_real_processor_config_for_8b_on_one_gpu():
    cfg = V.VLLMConfig()
    pc = cfg.processor_config(replicas=3)
    assert isinstance(pc, vLLMEngineProcessorConfig)
    assert pc.model_source == "meta-llama/Llama-3.1-8B-Instruct" and pc.concurrency == 3
    assert pc.should_continue_on_error is True
    for value, cls in ((pc.chat_template_stage, ChatTemplateStageConfig), (pc.tokenize_stage, TokenizerStageConfig),
                       (pc.detokenize_stage, DetokenizeStageConfig)):  # fmt: skip
        assert resolve_stage_config(value, cls).enabled is False
    kw = pc.engine_kwargs
    assert kw["max_model_len"] == 131072 and kw["tensor_parallel_size"] == 1 and kw["pipeline_parallel_size"] == 1
    assert kw["enable_prefix_caching"] is True and kw["enable_chunked_prefill"] is True
    assert kw["max_num_batched_tokens"] == 16384 and kw["max_num_seqs"] == 16 and kw["dtype"] == "bfloat16"
    assert kw["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert kw["task_type"] == "generate"
    # Ray warns, and the engine starves, when fewer rows are in flight than max_num_seqs.
    assert pc.batch_size * pc.max_concurrent_batches >= 2 * kw["max_num_seqs"]


def test_70b_preset_on_four_gpus_and_overrides():
    cfg = V.VLLMConfig(preset="70b-4gpu")
    kw = cfg.processor_config(1).engine_kwargs
    assert cfg.model_source == "meta-llama/Llama-3.1-70B-Instruct" and cfg.gpus_per_replica == 4
    assert kw["tensor_parallel_size"] == 4 and kw["max_num_seqs"] == 16 and kw["max_num_batched_tokens"] == 16384
    mine = V.VLLMConfig(preset="70b-4gpu", model="s3://b/llama70", max_num_seqs=4, engine_kwargs={"kv_cache_dtype": "fp8"})
    kw = mine.engine_settings()
    assert mine.model_source == "s3://b/llama70" and kw["max_num_seqs"] == 4 and kw["kv_cache_dtype"] == "fp8"
    assert V.VLLMConfig(engine_kwargs={"tensor_parallel_size": 2}).gpus_per_replica == 2


@pytest.mark.parametrize(
    "options, message",
    [({"preset": "405b"}, "unknown preset"), ({"tokenizer": "gguf"}, "tokenizer must be"), ({"batch_size": 0}, "sizes"),
     ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
     ({"engine_kwargs": {"max_model_len": 8192}}, "not in engine_kwargs")],
)  # fmt: skip
def test_bad_settings_are_engine_errors(options, message):
    with pytest.raises(EngineError, match=message):
        V.VLLMConfig(**options)


def test_kv_cache_arithmetic_behind_the_presets():
    assert V.LLAMA31_8B.kv_bytes_per_token == 128 * 1024
    assert V.LLAMA31_70B.kv_bytes_per_token == 320 * 1024
    assert V.LLAMA31_8B.kv_bytes_per_token * 131072 == 16 * V.GIB
    assert V.LLAMA31_70B.kv_bytes_per_token * 131072 == 40 * V.GIB
    assert V.LLAMA31_405B_FP8.kv_bytes_per_token == 504 * 1024 and V.LLAMA31_405B_FP8.kv_bytes_per_token * 131072 == 63 * V.GIB
    full = {name: V.kv_cache_tokens(p.shape, p.gpus) // 131072 for name, p in V.PRESETS.items()}
    assert full == {"8b-1gpu": 3, "70b-4gpu": 3, "405b-fp8-16gpu": 10}  # full-length sequences a replica holds
    for preset in V.PRESETS.values():  # 16 resident while windows average under ~27K tokens
        assert preset.max_num_seqs * 27_000 <= V.kv_cache_tokens(preset.shape, preset.gpus)
    assert 430_000 < V.kv_cache_tokens(V.LLAMA31_8B, 1) < 440_000
    assert 460_000 < V.kv_cache_tokens(V.LLAMA31_70B, 4) < 470_000
    assert 1_320_000 < V.kv_cache_tokens(V.LLAMA31_405B_FP8, 16) < 1_340_000


def test_405b_fp8_preset_spans_two_nodes_of_eight_gpus():
    # FP8 feed-forward weights in 124 of 126 layers, the rest bf16: 487 GB, as Meta's FP8 checkpoint.
    assert 487e9 < V.LLAMA31_405B_FP8.weight_bytes < 488e9 and 453 < V.LLAMA31_405B_FP8.weight_gib < 454
    cfg = V.VLLMConfig(preset="405b-fp8-16gpu")
    kw = cfg.processor_config(1).engine_kwargs
    assert cfg.model_source == "meta-llama/Llama-3.1-405B-Instruct-FP8" and cfg.gpus_per_replica == 16
    assert kw["tensor_parallel_size"] == 8 and kw["pipeline_parallel_size"] == 2 and kw["max_model_len"] == 131072
    assert V.replica_count(32, cfg.gpus_per_replica, None) == 2
    assert V.VLLMConfig(preset="405b-fp8-16gpu", pipeline_parallel_size=4).gpus_per_replica == 32


def test_replicas():
    assert V.replica_count(4, 1, None) == 4
    assert V.replica_count(8, 4, None) == 2
    assert V.replica_count(0, 1, 3) == 3  # asked for: a cluster may add GPU nodes on demand
    with pytest.raises(EngineError, match="has 3 GPUs and a replica needs 4"):
        V.replica_count(3, 4, None)


# -- rows in ----------------------------------------------------------------------------------------------------------


def test_rows_in_carry_our_token_ids_and_sampling_params_with_the_schema(tmp_path):
    rows = window_rows(tmp_path)
    assert len(rows) > 1
    schema_json = json.dumps(SCHEMA.json_schema, separators=(",", ":"))
    for r in rows:
        v = S.to_vllm_row(r, schema_json, 4096, STOP)
        assert v["tokenized_prompt"] == array("i", r["prompt"]).tolist() and len(v["tokenized_prompt"]) == r["prompt_tokens"]
        assert v[S.KEY_COLUMN] == r["request_id"] and v[S.ERROR_COLUMN] == ""
        assert not (set(v) & (VLLM_INPUT_KEYS | set(VLLM_OUTPUT) | {"request_id"}))  # our bytes "prompt" is gone
        sp = v["sampling_params"]
        assert set(sp) <= SAMPLING_FIELDS and set(sp["structured_outputs"]) <= STRUCTURED_FIELDS
        # The retry's budget up front: twice the window's, which the packer left room for.
        assert sp["max_tokens"] == v["output_budget"] == min(2 * 256, 4096 - r["prompt_tokens"]) > r["max_tokens"]
        assert sp["temperature"] == 0.0 and sp["stop_token_ids"] == v[S.STOP_COLUMN] == STOP and EOT in STOP
        assert sp["structured_outputs"] == {"json": schema_json, "disable_any_whitespace": True}
        assert json.loads(sp["structured_outputs"]["json"]) == SCHEMA.json_schema


def test_rows_in_of_failed_documents_have_the_column_types_of_windows(tmp_path):
    """Ray Data aligns the blocks it batches for the engine stage; a field typed null in one
    block and struct in another fails there (the first real vLLM run found it)."""
    make_corrupt_pdf(tmp_path / "bad.pdf")
    [failed] = parse_and_pack(item(tmp_path / "bad.pdf"), small_spec())
    windows = [S.to_vllm_row(r, "{}", 4096, STOP) for r in window_rows(tmp_path)]
    f = S.to_vllm_row(failed, "{}", 4096, STOP)
    assert f[S.ERROR_COLUMN] == S.NOT_SENT and f["tokenized_prompt"] == [] and f["prompt_digest"] == ""
    # As Ray Data LLM's preprocess leaves them (each row in a "__data" struct), a block of each
    # kind, concatenated by Ray Data's own code, as it does before a batch goes to the engine.
    wrapped = concat([block([{"__data": r} for r in windows]), block([{"__data": f}])])
    assert [r["__data"] for r in wrapped.to_pylist()] == [*windows, f]
    assert all(r[S.ERROR_COLUMN] == "" for r in windows)  # never None: Ray would take that for an error


# -- rows out ---------------------------------------------------------------------------------------------------------


def out_row(generated: list[int], text: str, budget: int = 100, max_tokens: int = 50, error: str = "") -> dict:
    """A row as Ray 2.60's vLLM stage returns it: our columns, less the two it pops, plus its outputs."""
    ours = {S.KEY_COLUMN: "d:0", "doc_id": "d", "window": 0, "windows": 1, "units": "[1]", "prompt_tokens": 900,
            "texts": json.dumps([["README.md", 0, 1, "# tinykv\nA small store.\n"]]), "max_tokens": max_tokens,
            "doc": "{}", "output_budget": budget, S.STOP_COLUMN: STOP,
            "prompt_digest": S.ids_digest([1] * 900)}  # fmt: skip
    vllm = VLLM_OUTPUT | {"prompt_token_ids": None if error else [1] * 900, "num_input_tokens": 0 if error else 900,
                          "generated_tokens": generated, "generated_text": text,
                          "num_generated_tokens": len(generated)}  # fmt: skip
    extra = {"request_id": -1 if error else 3, "batch_uuid": "b", "time_taken_llm": 1.0, "params": "", S.ERROR_COLUMN: error}
    return ours | vllm | extra


def test_valid_output_becomes_data_and_drops_vllm_columns():
    r = S.result_row(out_row([5] * 20 + [EOT], GOOD), SCHEMA)
    assert r["error"] is None and r["finish_reason"] == "stop" and r["attempts"] == 1 and r["completion_tokens"] == 21
    assert json.loads(r["data"])["purpose"] == "p" and r["raw"] is None
    assert set(r) == {S.KEY_COLUMN, *S._CARRIED, "data", "evidence", "error", "raw", "finish_reason", "completion_tokens",
                      "attempts", "constrained", "tokens_estimated", "reasoning"}  # fmt: skip
    # A quoted value: the quote is looked up in the window's text, which the row carried.
    quoted = json.loads(GOOD) | {"name": {"value": "tinykv", "quote": "# tinykv", "where": "README.md:1"}}
    r = S.result_row(out_row([5] * 20 + [EOT], json.dumps(quoted)), SCHEMA)
    [e] = json.loads(r["evidence"])
    assert json.loads(r["data"])["name"] == "tinykv" and e["verified"] and e["found"] == "README.md:1-1"


def test_finish_reason_is_vllms_rule():
    assert S.finish_reason([5, 6, EOT], 3, STOP) == "stop"  # a stop token on the last allowed step still stops
    assert S.finish_reason([5, 6, 7], 3, STOP) == "length"
    assert S.finish_reason([5, 6, 7], 3, [7]) == "stop"  # the request's own stop ids
    assert S.finish_reason([5, 6], 3, STOP) == "stop"
    assert S.finish_reason([], 3, STOP) == "stop"


def test_truncated_output_is_a_failure_with_raw_text_not_retried():
    r = S.result_row(out_row([5] * 100, '{"name":"xxxx', budget=100, max_tokens=50), SCHEMA)
    assert r["data"] is None and r["finish_reason"] == "length" and r["raw"] == '{"name":"xxxx'
    assert "max_tokens (100 tokens)" in r["error"] and "not retried" in r["error"] and r["attempts"] == 1
    r = S.result_row(out_row([5] * 50, "{", budget=50, max_tokens=50), SCHEMA)
    assert "no room" in r["error"]


def test_a_prompt_vllm_ran_other_than_the_packed_one_fails_the_window():
    row = out_row([5, EOT], GOOD) | {"prompt_token_ids": [1] * 899 + [2]}
    r = S.result_row(row, SCHEMA)
    assert r["data"] is None and r["finish_reason"] == "error" and r["attempts"] == 1
    assert r["error"] == "engine error: vLLM ran 900 prompt ids that differ from the 900 packed"
    assert S.result_row(out_row([5, EOT], GOOD) | {"num_input_tokens": 900}, SCHEMA)["prompt_tokens"] == 900


def test_invalid_json_is_a_failure_with_raw_text():
    r = S.result_row(out_row([5, EOT], '{"name": 5}'), SCHEMA)
    assert r["data"] is None and r["error"].startswith("invalid JSON for schema 'repo'") and r["raw"] == '{"name": 5}'


def test_error_rows_become_failed_windows():
    r = S.result_row(out_row([], "", error="ValueError: " + "x" * 2000), SCHEMA)
    assert r["finish_reason"] == "error" and r["error"].startswith("engine error: ValueError: xxx")
    assert len(r["error"]) < 600 and r["data"] is None and r["attempts"] == 1


def block(rows: list[dict]) -> pa.Table:
    """Rows with different columns in one table, missing ones None, as Ray Data's block builder does."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in names})


def test_finish_batch_makes_the_graphs_rows(tmp_path):
    done = S.result_row(out_row([5, EOT], GOOD), SCHEMA) | {S.ERROR_COLUMN: ""}  # as the postprocess left it
    failed_window = out_row([], "", error="RuntimeError: boom") | {S.KEY_COLUMN: "d:1", "window": 1}
    make_corrupt_pdf(tmp_path / "bad.pdf")
    [bad] = parse_and_pack(item(tmp_path / "bad.pdf"), small_spec())
    failed_doc = S.to_vllm_row(bad, "{}", 4096, STOP)  # bypasses the engine stage and postprocess unchanged
    table = S.finish_batch(block([done, failed_window, failed_doc]), SCHEMA)
    assert table.schema == OUT_SCHEMA
    a, b, c = table.to_pylist()
    assert a["request_id"] == "d:0" and a["data"] and a["error"] is None
    assert b["request_id"] == "d:1" and b["finish_reason"] == "error" and "boom" in b["error"]
    assert c["window"] == -1 and c["request_id"] == bad["request_id"] and c["attempts"] == 0 and c["error"] is None


# -- engine choice ----------------------------------------------------------------------------------------------------


def test_auto_picks_vllm_with_the_extra_and_gpus(monkeypatch):
    monkeypatch.setattr(V, "vllm_installed", lambda: True)
    name, why = choose_engine(EngineSpec(), gpus=(2, "on this machine"))
    assert name == "vllm" and "2 GPU(s)" in why and "extra is installed" in why
    assert choose_engine(EngineSpec(), gpus=(0, "on this machine")) == (
        "llamacpp", "auto: the embedded CPU engine (no GPU visible on this machine; where the GPUs are on other nodes, "
        "set the engine to vllm)",
    )  # fmt: skip
    assert choose_engine(EngineSpec(options={"base_url": "http://h/v1"}), gpus=(2, "x"))[0] == "openai"
    assert choose_engine(EngineSpec(name="llamacpp"), gpus=(2, "x")) == ("llamacpp", "chosen in the job")


def test_auto_without_the_extra_says_so(monkeypatch):
    monkeypatch.setattr(V, "vllm_installed", lambda: False)
    name, why = choose_engine(EngineSpec(), gpus=(1, "on this machine"))
    assert name == "llamacpp" and "vllm extra is not installed" in why
    assert choose_engine(EngineSpec(), gpus=(0, "on this machine"))[1].endswith("(no server URL, no GPU visible on this machine)")


@pytest.mark.parametrize("mask, expected", [(None, 4), ("", 0), ("-1", 0), ("0,1", 2), ("1,-1,2", 1), ("0,1,2,3,4,5", 4)])
def test_visible_gpus_counts_device_files_under_the_cuda_mask(monkeypatch, mask, expected):
    monkeypatch.setattr(V.glob, "glob", lambda pattern: [f"/dev/nvidia{i}" for i in range(4)])
    if mask is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    if V.sys.modules.get("ray") and V.sys.modules["ray"].is_initialized():
        pytest.skip("counts the Ray cluster's GPUs once Ray is up")
    assert V.visible_gpus() == (expected, "on this machine")


# -- the graph, through Ray Data LLM's real Processor ---------------------------------------------------------------


class StandInUDF(StatefulStageUDF):
    """Stands in for Ray 2.60's vLLMEngineStageUDF: pops the same input keys, returns
    the same output keys, and with should_continue_on_error turns an exception into
    an error row. Scripted by document name: boom.pdf fails, long.pdf runs to the cap."""

    async def udf(self, batch):
        for row in batch:
            idx = row[self.IDX_IN_BATCH_COLUMN]
            try:
                out = {**self.generate(row), "request_id": 1, "params": "SamplingParams(...)", S.ERROR_COLUMN: ""}
            except ValueError as e:
                out = VLLM_OUTPUT | {"request_id": -1, "params": "", S.ERROR_COLUMN: f"ValueError: {e}"}
            yield out | {self.IDX_IN_BATCH_COLUMN: idx, "batch_uuid": "b", "time_taken_llm": 0.0}

    @staticmethod
    def generate(row: dict) -> dict:
        assert row["window"] >= 0, "failed documents never reach the engine"
        ids = [int(i) for i in row.pop("tokenized_prompt")]
        params = row.pop("sampling_params")
        json.loads(params["structured_outputs"]["json"])
        assert ids[0] == 128000 and len(ids) == row["prompt_tokens"]
        name = json.loads(row["doc"])["rel_path"]
        if name == "boom.pdf":
            raise ValueError("the prompt is too long")
        budget = int(params["max_tokens"])
        tokens, text = ([5] * budget, '{"name":"') if name == "long.pdf" else ([5, 6, EOT], GOOD)
        return VLLM_OUTPUT | {"prompt_token_ids": ids, "num_input_tokens": len(ids), "generated_tokens": tokens,
                              "generated_text": text, "num_generated_tokens": len(tokens)}  # fmt: skip


class StandInStage(StatefulStage):
    fn: type = StandInUDF


def stand_in_processor(config, schema, concurrency, thinks=False):
    """Ray's real Processor with the stand-in stage where build_processor puts vLLM's."""
    stage = StandInStage(fn=StandInUDF, map_batches_kwargs={"concurrency": 1})
    return Processor(config.processor_config(1), [stage], postprocess=partial(S.result_row, schema=schema, thinks=thinks))


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, logging_level=logging.ERROR)
        ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_the_graph_through_the_processor_keeps_every_window(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(S, "build", stand_in_processor)
    make_pdf(tmp_path / "a.pdf", lorem_pages(16, words_per_page=250))
    make_pdf(tmp_path / "boom.pdf", lorem_pages(1))
    make_pdf(tmp_path / "long.pdf", lorem_pages(1))
    make_corrupt_pdf(tmp_path / "bad.pdf")
    items = [item(tmp_path / n) for n in ("a.pdf", "boom.pdf", "long.pdf", "bad.pdf")]
    rows = list(run_graph(items, small_spec()))
    by_doc: dict[str, list[dict]] = {}
    for r in rows:
        assert set(r) == set(OUT_SCHEMA.names) and r["request_id"] == f"{r['doc_id']}:{r['window']}"
        by_doc.setdefault(json.loads(r["doc"])["rel_path"], []).append(r)
    a = by_doc["a.pdf"]
    assert len(a) == a[0]["windows"] > 1 and all(r["data"] and r["finish_reason"] == "stop" for r in a)
    [boom] = by_doc["boom.pdf"]
    assert boom["finish_reason"] == "error" and boom["error"] == "engine error: ValueError: the prompt is too long"
    [long] = by_doc["long.pdf"]
    assert long["finish_reason"] == "length" and long["raw"] == '{"name":"' and long["completion_tokens"] == 512
    [bad] = by_doc["bad.pdf"]
    assert bad["window"] == -1 and bad["attempts"] == 0 and json.loads(bad["doc"])["status"] == "failed"


@pytest.mark.slow
def test_without_gpus_or_the_extra_the_processor_says_what_is_missing(local_ray):
    if V.visible_gpus()[0]:
        pytest.skip("this Ray cluster has GPUs: the message for none cannot show here")
    assert V.visible_gpus() == (0, "in the Ray cluster")
    with pytest.raises(EngineError, match="has 0 GPUs"):
        S.build(V.VLLMConfig(), SCHEMA, 1)
    if not V.vllm_installed():
        with pytest.raises(EngineError, match=r"pip install 'longctx\[vllm\]'"):
            S.build(V.VLLMConfig(replicas=1), SCHEMA, 1)


@needs_gpu
def test_the_graph_on_a_gpu_with_dummy_weights(local_ray, tmp_path):
    """The real processor and vLLM: Llama 3.1 8B's shape with random weights, so the text
    is noise, but constrained to the schema, and every window comes back."""
    from bench.model_dir import write_model_dir

    model = write_model_dir(tmp_path / "llama-3.1-8b")
    cfg = V.VLLMConfig(model=str(model), max_model_len=8192, replicas=1, engine_kwargs={"load_format": "dummy"})
    make_pdf(tmp_path / "a.pdf", lorem_pages(40, words_per_page=250))
    make_corrupt_pdf(tmp_path / "bad.pdf")
    rows = list(run_graph([item(tmp_path / "a.pdf"), item(tmp_path / "bad.pdf")], small_spec(cfg, 8192)))
    windows = [r for r in rows if r["window"] >= 0]
    assert len(windows) == windows[0]["windows"] > 1 and len(rows) == len(windows) + 1
    for r in windows:
        assert r["finish_reason"] in ("stop", "length") and r["completion_tokens"] > 0 and r["attempts"] == 1
        assert r["data"] or r["raw"] is not None
