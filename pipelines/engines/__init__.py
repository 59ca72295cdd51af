"""Inference engines, by name. Each config class is cheap to import: engines
import their heavy libraries only when a chat format or engine is made."""

from __future__ import annotations

from typing import Any

from pipelines.engines.base import (
    Completion,
    Engine,
    EngineConfig,
    EngineError,
    Request,
)
from pipelines.engines.llamacpp import LlamaCppConfig
from pipelines.engines.openai_compat import OpenAIConfig
from pipelines.engines.vllm import VLLMConfig

ENGINES: dict[str, type] = {"llamacpp": LlamaCppConfig, "openai": OpenAIConfig, "vllm": VLLMConfig}


def engine_config(name: str, **options: Any) -> EngineConfig:
    """A config from CLI-style options; None means "the engine's default"."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine '{name}' (available: {', '.join(ENGINES)})")
    try:
        return ENGINES[name](**{k: v for k, v in options.items() if v is not None})
    except TypeError as e:  # an option this engine does not take
        raise EngineError(f"engine '{name}': {e}") from e


__all__ = ["ENGINES", "Completion", "Engine", "EngineConfig", "EngineError", "Request", "engine_config"]
