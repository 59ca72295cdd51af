"""Named models: a model split over wheel packages is joined once, used only when its
SHA-256 matches, and a missing part is one line naming it and the extra."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from pipelines import model_files as M


def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slices: list[bytes]) -> M.SplitModel:
    """Packages laid out as the split wheels install them: <package>/data/partNN.bin."""
    site = tmp_path / "site"
    for i, data in enumerate(slices, 1):
        pkg = site / f"fake_model_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('the parts are found, never imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(slices)
    return M.SplitModel(
        file_name="fake.gguf",
        extra="fake-extra",
        package="fake_model_part{i}",
        parts=len(slices),
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
    )


def test_parts_are_joined_once_in_order(tmp_path, monkeypatch):
    slices = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 1000, b"end"]
    model = split_model(tmp_path, monkeypatch, slices)
    cache = tmp_path / "cache"
    path = M.joined_path(model, cache)
    assert path == cache / "fake.gguf"
    assert path.read_bytes() == b"".join(slices)
    assert [p.name for p in cache.iterdir()] == ["fake.gguf"]  # no temporary left
    for part in M.part_files(model):  # a later use does not read the parts again
        part.unlink()
    assert M.joined_path(model, cache) == path


def test_joined_parts_with_another_digest_are_refused(tmp_path, monkeypatch):
    model = split_model(tmp_path, monkeypatch, [b"GGUF", b"tampered"])
    model = dataclasses.replace(model, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(M.ModelFileError, match=r"fake\.gguf: the joined parts have SHA-256 [0-9a-f]{64}, not the model's 0{64}"):
        M.joined_path(model, cache)
    assert list(cache.iterdir()) == []  # nothing is left to be used later


def test_a_cached_file_of_the_wrong_size_is_joined_again(tmp_path, monkeypatch):
    model = split_model(tmp_path, monkeypatch, [b"GGUF", b"body"])
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fake.gguf").write_bytes(b"GGUF")  # cut short, e.g. by a full disk
    assert M.joined_path(model, cache).read_bytes() == b"GGUFbody"


def test_a_missing_part_is_one_line_with_the_extra(tmp_path, monkeypatch):
    model = split_model(tmp_path, monkeypatch, [b"GGUF", b"body"])
    model = dataclasses.replace(model, parts=3)
    with pytest.raises(M.ModelFileError) as e:
        M.joined_path(model, tmp_path / "cache")
    assert str(e.value) == "fake.gguf: part 3 of 3 is not installed: pip install 'longctx[fake-extra]'"


def test_names_and_paths():
    assert M.model_file_name(None) == M.SMOLLM2_FILE
    assert M.model_file_name("Qwen2.5-Coder-1.5B") == M.QWEN_CODER.file_name
    assert M.model_file_name("/models/Llama-3.2-1B-Instruct-Q4_K_M.gguf") == "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    assert M.model_path("/models/x.gguf") == Path("/models/x.gguf")
    assert M.model_path(None).name == M.SMOLLM2_FILE and M.model_path(None).is_file()  # the tests' model
