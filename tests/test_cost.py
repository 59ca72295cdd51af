"""The cost estimate of ``longctx plan``: pure arithmetic, checked against figures worked by hand."""

import pytest

from pipelines.cost import (
    API_PRICES,
    ApiPrices,
    CostAssumptions,
    PriceFileError,
    RunTally,
    api_costs,
    decode_gpu_seconds,
    engine_preset,
    load_api_prices,
    prefill_flops,
    preset_cost,
    run_cost,
)
from pipelines.engines.openai_compat import OpenAIConfig
from pipelines.engines.vllm import PRESETS, VLLMConfig

EIGHT_B = PRESETS["8b-1gpu"]


def test_one_long_window_on_the_8b_matches_the_hand_computed_figures():
    # prefill: 2 × 8.03e9 × 100,000 (matmuls) + 2 × 32 layers × 100,000² × 4,096 hidden (causal attention)
    flops = 2 * 8.03e9 * 1e5 + 2 * 32 * 1e10 * 4096
    assert prefill_flops(EIGHT_B, 100_000) == pytest.approx(flops)
    assert flops / (989e12 * 0.40) == pytest.approx(10.686, rel=1e-4)  # GPU-seconds at 40% of the H100's peak
    # decode: 436,821 KV tokens on one GPU hold 4 sequences of 101,000; each of 1,000 steps reads 16.06 GB of
    # weights shared by 4, and 100,500 tokens (the mean context) × 128 KiB of KV, at 70% of 3.35 TB/s
    per_token = (16.06e9 / 4 + 100_500 * 131_072) / (3.35e12 * 0.70)
    assert decode_gpu_seconds(EIGHT_B, 100_000, 1_000, CostAssumptions()) == pytest.approx(1000 * per_token)
    assert 1000 * per_token == pytest.approx(7.3295, rel=1e-4)
    cost = preset_cost("8b-1gpu", [(100_000, 1_000)], CostAssumptions(gpu_hour_price=3.0))
    assert cost.gpu_hours == pytest.approx((10.686 + 7.3295) / 3600, rel=1e-4)
    assert cost.dollars == pytest.approx(3.0 * cost.gpu_hours)
    assert cost.gpu_hours == pytest.approx(cost.prefill_gpu_hours + cost.decode_gpu_hours)


def test_attention_makes_prefill_grow_faster_than_the_tokens():
    short, long = prefill_flops(EIGHT_B, 8_192), prefill_flops(EIGHT_B, 131_072)
    assert long / short > 16 * 1.5  # 16× the tokens, well over 16× the FLOPs


def test_short_windows_batch_up_to_max_num_seqs_and_share_the_weights():
    # 650-token windows: the cache holds hundreds, max_num_seqs caps the batch at 16
    per_token = decode_gpu_seconds(EIGHT_B, 650, 1, CostAssumptions())
    assert per_token == pytest.approx((16.06e9 / 16 + 650.5 * 131_072) / (3.35e12 * 0.70))


def test_every_preset_is_priced_and_bigger_models_cost_more():
    costs = run_cost([(30_000, 2_000)] * 10)
    assert [c.preset for c in costs] == list(PRESETS)
    assert costs[0].dollars < costs[1].dollars < costs[2].dollars
    assert [c.gpus_per_replica for c in costs] == [1, 4, 16]


def test_hosted_batch_prices_charge_prompt_and_output_tokens_at_their_rates():
    table = ApiPrices(
        date="2026-01-01", source="test", prices={"a": {"input": 1.0, "output": 10.0}, "b": {"input": 0, "output": 2}}
    )
    a, b = api_costs([(600_000, 1_000), (400_000, 1_000)], table)
    assert (a.model, a.dollars) == ("a", pytest.approx(1.0 + 0.002 * 10))  # 1M prompt tokens, 2K output tokens
    assert (b.model, b.dollars) == ("b", pytest.approx(0.004))
    assert API_PRICES.date and all(p.input > 0 and p.output > p.input for p in API_PRICES.prices.values())


def test_a_price_file_replaces_the_table_and_a_bad_one_is_one_line(tmp_path):
    good = tmp_path / "prices.json"
    good.write_text('{"date": "2027-01-01", "source": "ours", "prices": {"x/y": {"input": 0.5, "output": 1.5}}}')
    assert load_api_prices(good).prices["x/y"].output == 1.5
    for name, text, why in [
        ("missing.json", None, "No such file"),
        ("notjson.json", "{prices", "Expecting"),
        ("negative.json", '{"date": "d", "source": "s", "prices": {"m": {"input": -1, "output": 1}}}', "prices.m.input"),
        ("extra.json", '{"date": "d", "source": "s", "prices": {}, "currency": "EUR"}', "currency"),
    ]:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(PriceFileError) as e:
            load_api_prices(path)
        assert str(e.value).startswith(f"price file {path}: ") and why in str(e.value) and "\n" not in str(e.value)


def test_a_run_is_estimated_for_its_preset_on_gpus_only():
    assert engine_preset(VLLMConfig()) == EIGHT_B
    assert engine_preset(VLLMConfig(model=EIGHT_B.model)) == EIGHT_B  # the preset's model, named
    wide = engine_preset(VLLMConfig(preset="70b-4gpu", tensor_parallel_size=8, max_num_seqs=32))
    assert (wide.gpus, wide.max_num_seqs, wide.shape) == (8, 32, PRESETS["70b-4gpu"].shape)  # the run's settings
    assert engine_preset(VLLMConfig(device="cpu")) is None  # not an H100
    assert engine_preset(VLLMConfig(model="/models/qwen2.5-7b", tokenizer="hf:/models/qwen2.5-7b")) is None
    assert engine_preset(OpenAIConfig()) is None


def test_the_run_tally_sets_the_estimate_for_the_windows_run_beside_the_gpu_time_held():
    tally = RunTally(EIGHT_B)
    tally.add(100_000, 1_000, 250)
    tally.add(100_000, 1_000, 250)
    tally.held_gpu_s = 61.0
    gpu = tally.gpu_time()
    assert tally.output_budget == 2_000
    assert gpu["estimated_prefill_s"] == pytest.approx(2 * 10.686, abs=2e-3)  # the hand-computed window, twice
    assert gpu["estimated_decode_s_at_budget"] == pytest.approx(2 * 7.3295, abs=2e-3)
    at_250 = decode_gpu_seconds(EIGHT_B, 100_000, 250, CostAssumptions())
    assert gpu["estimated_decode_s_at_tokens_generated"] == pytest.approx(2 * at_250, abs=2e-3)
    assert at_250 < 7.3295 / 3  # a quarter of the budget: less than a quarter of its decode (shorter contexts)
    assert gpu["held_gpu_s"] == 61.0 and gpu["assumptions"] == {"mfu": 0.40, "bandwidth_use": 0.70}
    other = RunTally(None)  # llama.cpp, an API, vLLM on CPU: budget counted, no GPU estimate
    other.add(500, 64, 12)
    assert other.output_budget == 64 and other.gpu_time() is None
