"""Skipping what truly needs a GPU, with the reason it is skipped."""

from __future__ import annotations

import pytest

from pipelines.engines import vllm as V


def no_gpu_reason() -> str | None:
    if not V.vllm_installed():
        return "needs vLLM (pip install 'longctx[vllm]'; Linux with CUDA only)"
    if V.visible_gpus()[0] == 0:
        return "needs a CUDA GPU; none is visible"
    return None


def needs_gpu(test):
    """Mark a test `gpu` (select with -m gpu) and skip it, with the reason, where there is none."""
    reason = no_gpu_reason()
    return pytest.mark.gpu(pytest.mark.skipif(reason is not None, reason=reason or "")(test))
