"""Which files of a repository become units: git's ignore rules and our skip rules. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from pathspec import GitIgnoreSpec

from pipelines.ingest.limits import IngestLimits

# Stable skip reasons (they end up in Document.skipped and in reports).
LOCKFILE = "lockfile"
VENDORED = "vendored or generated directory"
MINIFIED = "minified or source map"
BINARY = "binary"
NOT_UTF8 = "binary (not UTF-8)"
SYMLINK = "symlink"
BAD_NAME = "file name is not UTF-8"

LOCKFILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "poetry.lock",
        "uv.lock",
        "pdm.lock",
        "Pipfile.lock",
        "Cargo.lock",
        "Gemfile.lock",
        "composer.lock",
        "go.sum",
        "flake.lock",
        "Podfile.lock",
        "mix.lock",
        "pubspec.lock",
        "packages.lock.json",
        "gradle.lockfile",
        "Package.resolved",
        "conda-lock.yml",
    }
)
VENDORED_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "jspm_packages",
        "vendor",
        "third_party",
        "dist",
        "build",
        "__pycache__",
        ".venv",
        "venv",
        "target",
        ".tox",
        ".nox",
        "site-packages",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".gradle",
        ".next",
        ".nuxt",
    }
)
MINIFIED_SUFFIXES = (".min.js", ".min.mjs", ".min.css", ".map")
BINARY_SNIFF_BYTES = 8192  # git's own heuristic: a NUL in the first 8 KiB means binary


class RepoFailure(Exception):
    """The whole repository fails; ``str(exc)`` is the document's one-line reason."""


# --- gitignore -----------------------------------------------------------------------------


def _spec(text: str) -> GitIgnoreSpec:
    lines = text.splitlines()
    try:
        return GitIgnoreSpec.from_lines(lines)
    except ValueError:  # GitIgnorePatternError
        # git silently drops a malformed pattern; keep the good ones, in order
        good = []
        for line in lines:
            try:
                GitIgnoreSpec.from_lines([line])
                good.append(line)
            except ValueError:  # GitIgnorePatternError
                pass
        return GitIgnoreSpec.from_lines(good)


class GitIgnore:
    """The .gitignore files of one tree, matched the way git does.

    A nested .gitignore's patterns are relative to its own directory and beat its ancestors';
    within one file the last matching pattern wins; nothing under an excluded directory can be
    re-included (git never looks inside it).
    """

    def __init__(self, files: Iterable[tuple[str, str]] = ()) -> None:
        self._specs: dict[str, GitIgnoreSpec] = {}  # directory ("" = root) -> its rules
        self._dir_cache: dict[str, bool] = {}
        for path, text in files:
            self.add(path.rpartition("/")[0], text)

    def add(self, directory: str, text: str) -> None:
        """Rules of ``directory/.gitignore``."""
        self._specs[directory.strip("/")] = _spec(text)
        self._dir_cache.clear()

    def matches(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` itself is excluded, ignoring its ancestors' state."""
        parts = path.split("/")
        for depth in range(len(parts) - 1, -1, -1):  # deepest .gitignore first
            spec = self._specs.get("/".join(parts[:depth]))
            if spec is None:
                continue
            rel = "/".join(parts[depth:]) + ("/" if is_dir else "")
            verdict = spec.check_file(rel).include  # True: ignored, False: negated, None: no match
            if verdict is not None:
                return verdict
        return False

    def _dir_ignored(self, directory: str) -> bool:
        hit = self._dir_cache.get(directory)
        if hit is None:
            parent = directory.rpartition("/")[0]
            hit = (bool(parent) and self._dir_ignored(parent)) or self.matches(directory, True)
            self._dir_cache[directory] = hit
        return hit

    def ignored(self, path: str) -> bool:
        """Whether file ``path`` is excluded, by its own rules or an excluded ancestor directory."""
        parent = path.rpartition("/")[0]
        return (bool(parent) and self._dir_ignored(parent)) or self.matches(path)


def filter_ignored(gitignores: Iterable[tuple[str, str]], paths: Iterable[str]) -> list[str]:
    """Keep the file ``paths`` that git would list, given ``(path of a .gitignore, its text)`` pairs."""
    rules = GitIgnore(gitignores)
    return [p for p in paths if not rules.ignored(p)]


# --- skip rules ----------------------------------------------------------------------------


def vendored_dir(path: str) -> str | None:
    """The outermost vendored/generated directory containing file ``path`` (with a trailing /)."""
    parts = path.split("/")[:-1]
    for i, name in enumerate(parts):
        if is_vendored_name(name):
            return "/".join(parts[: i + 1]) + "/"
    return None


def is_vendored_name(name: str) -> bool:
    return name in VENDORED_DIRS or name.endswith(".egg-info")


def path_skip_reason(path: str) -> str | None:
    """Skip reason known from the path alone, so such files are never read."""
    name = path.rpartition("/")[2]
    if name in LOCKFILES:
        return LOCKFILE
    if vendored_dir(path):
        return VENDORED
    if name.endswith(MINIFIED_SUFFIXES):
        return MINIFIED
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable name (surrogate-escaped); it could not be a JSON key
        return BAD_NAME
    return None


def size_skip_reason(size: int, limits: IngestLimits) -> str | None:
    if size > limits.max_file_bytes:
        return f"too large: {size} bytes > max_file_bytes={limits.max_file_bytes}"
    return None


def decode_file(data: bytes, limits: IngestLimits) -> tuple[str | None, str | None]:
    """``(text, None)`` for a file worth reading, else ``(None, skip reason)``."""
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return None, BINARY
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, NOT_UTF8
    text = text.removeprefix("\ufeff")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if text and len(text) / lines > limits.max_line_chars:
        return None, MINIFIED
    return text, None


def classify(path: str, data: bytes, limits: IngestLimits) -> tuple[str | None, str | None]:
    """All skip rules for one file: ``(text, None)`` to keep it, ``(None, reason)`` to skip it."""
    reason = path_skip_reason(path) or size_skip_reason(len(data), limits)
    return (None, reason) if reason else decode_file(data, limits)


def check_file_count(n: int, limits: IngestLimits) -> None:
    if n > limits.max_repo_files:
        raise RepoFailure(f"too many files: more than max_repo_files={limits.max_repo_files}")


def check_total_bytes(n: int, limits: IngestLimits) -> None:
    if n > limits.max_archive_bytes:
        raise RepoFailure(
            f"expanded size of kept files {n} bytes > max_archive_bytes={limits.max_archive_bytes}"
        )


def readme_first_key(path: str) -> tuple[int, str]:
    """Sort key: top-level README* first, then everything by path (code-point = UTF-8 byte order)."""
    top_readme = "/" not in path and path.lower().startswith("readme")
    return (0 if top_readme else 1, path)
