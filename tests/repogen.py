"""Generate repositories (directories, git checkouts, archives) for tests and benchmarks."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
import zipfile
from pathlib import Path

Files = dict[str, str | bytes]

# No global/system config is read, so the machine's git setup cannot change the fixture.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}
_GIT_FLAGS = ["-c", "user.name=repogen", "-c", "user.email=repogen@example.invalid",
              "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main",
              "-c", "core.autocrlf=false"]  # fmt: skip


def _bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def run_git(root: Path, *args: str) -> bytes:
    """Run git in ``root`` with an isolated configuration; returns stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _GIT_ENV
    return subprocess.run(["git", "-C", str(root), *_GIT_FLAGS, *args], env=env, check=True, capture_output=True).stdout


def make_repo(root: Path, files: Files, git: bool = False) -> Path:
    """Write ``files`` (posix relative path -> content) under ``root``; optionally commit them.

    With ``git=True``: ``git init``, ``git add -A`` (so .gitignore rules apply) and one commit.
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_bytes(content))
    if git:
        run_git(root, "init", "-q")
        run_git(root, "add", "-A")
        run_git(root, "commit", "-q", "--allow-empty", "-m", "repogen")
    return root


def make_zip(path: Path, files: Files, prefix: str = "", symlinks: dict[str, str] | None = None) -> Path:
    """A zip of ``files`` under ``prefix`` (e.g. "repo-main/"); names are written verbatim,
    so unsafe ones ("../evil.py", "/abs.py") can be made. ``symlinks``: name -> target."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if prefix:
            zf.writestr(zipfile.ZipInfo(prefix.rstrip("/") + "/"), b"")
        for name, content in files.items():
            info = zipfile.ZipInfo(prefix + name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, _bytes(content))
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(prefix + name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # unix, so the mode bits mean something
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


def make_tar_gz(
    path: Path,
    files: Files,
    prefix: str = "",
    symlinks: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
) -> Path:
    """A .tar.gz of ``files`` under ``prefix``; ``symlinks``/``hardlinks``: name -> target
    (targets verbatim; a hardlink target is archive-root relative, as tar stores it)."""
    with tarfile.open(path, "w:gz") as tf:
        if prefix:
            d = tarfile.TarInfo(prefix.rstrip("/"))
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(d)
        for name, content in files.items():
            data = _bytes(content)
            info = tarfile.TarInfo(prefix + name)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
        for links, kind in ((symlinks, tarfile.SYMTYPE), (hardlinks, tarfile.LNKTYPE)):
            for name, target in (links or {}).items():
                info = tarfile.TarInfo(prefix + name)
                info.type, info.linkname = kind, target
                tf.addfile(info)
    return path


# --- synthetic Python source -----------------------------------------------------------------

_NOUNS = [
    "account",
    "user",
    "order",
    "invoice",
    "payment",
    "session",
    "token",
    "cache",
    "queue",
    "record",
    "report",
    "config",
    "channel",
    "message",
    "event",
    "metric",
    "schedule",
    "worker",
    "buffer",
    "packet",
    "policy",
    "region",
    "tenant",
    "ledger",
    "batch",
    "shard",
    "index",
    "stream",
    "window",
    "vector",
    "matrix",
    "graph",
    "node",
    "edge",
    "path",
    "route",
    "signal",
    "sensor",
    "device",
    "profile",
]
_VERBS = [
    "load",
    "save",
    "parse",
    "render",
    "build",
    "fetch",
    "update",
    "merge",
    "split",
    "validate",
    "compute",
    "resolve",
    "encode",
    "decode",
    "normalize",
    "filter",
    "collect",
    "publish",
    "dispatch",
    "refresh",
    "compact",
    "rotate",
    "score",
    "rank",
]
_TYPES = ("int", "str", "float", "bool", "list[int]", "dict[str, int]", "bytes")
_OPS = ("+", "-", "*", "//", "%")


def _function(rng: random.Random, indent: str = "") -> list[str]:
    verb, noun, other = rng.choice(_VERBS), rng.choice(_NOUNS), rng.choice(_NOUNS)
    n, op = rng.randint(2, 97), rng.choice(_OPS)
    typ = rng.choice(_TYPES)
    return [
        f"{indent}def {verb}_{noun}({other}: {typ}, limit: int = {n}) -> int:",
        f'{indent}    """{verb.capitalize()} the {noun} for one {other}, bounded by ``limit``."""',
        f"{indent}    total = len(str({other})) {op} {n}",
        f"{indent}    for step in range(limit):",
        f"{indent}        if step % {rng.randint(2, 9)} == 0:",
        f"{indent}            total += step",
        f"{indent}        elif total > {n * 10}:",
        f"{indent}            break",
        f"{indent}    return total",
        "",
    ]


def _class(rng: random.Random) -> list[str]:
    noun = rng.choice(_NOUNS)
    name = noun.capitalize() + rng.choice(("Store", "Service", "Client", "Manager", "Index"))
    lines = [
        f"class {name}:",
        f'    """Keeps {noun} state for one {rng.choice(_NOUNS)}."""',
        "",
        "    def __init__(self, capacity: int = 128) -> None:",
        "        self.capacity = capacity",
        "        self.items: dict[str, int] = {}",
        "",
    ]
    for _ in range(rng.randint(1, 3)):
        method = _function(rng, "    ")
        method[0] = method[0].replace("(", "(self, ", 1)
        lines += method
    return lines


def synth_repo_files(n_files: int, lines_per_file: int, seed: int = 0) -> dict[str, str]:
    """``n_files`` deterministic, plausible Python modules of about ``lines_per_file`` lines,
    spread over nested packages. About 8 Llama 3 tokens a line: 500 files x 250 lines is ~1M
    tokens."""
    rng = random.Random(seed)
    n_pkgs = max(1, round(n_files**0.5 / 2))
    files: dict[str, str] = {}
    for i in range(n_files):
        pkg = f"{_NOUNS[i % n_pkgs % len(_NOUNS)]}{i % n_pkgs // len(_NOUNS) or ''}"
        sub = ("core", "io", "api")[(i // n_pkgs) % 3]
        module = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}_{i}"
        dep = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
        lines = [
            f'"""{module.replace("_", " ").capitalize()}: part of the {pkg} {sub} layer."""',
            "",
            "from __future__ import annotations",
            "",
            "import logging",
            f"from synth.{pkg}.core import {dep}",
            "",
            "log = logging.getLogger(__name__)",
            "",
        ]
        while len(lines) < lines_per_file:
            block = _class(rng) if rng.random() < 0.3 else _function(rng)
            if len(lines) + len(block) > lines_per_file:  # top up with constants: valid Python
                block = [f"{rng.choice(_NOUNS).upper()}_{j} = {rng.randint(0, 999)}"
                         for j in range(lines_per_file - len(lines))]  # fmt: skip
            lines += block
        files[f"src/synth/{pkg}/{sub}/{module}.py"] = "\n".join(lines[:lines_per_file]) + "\n"
    return files
