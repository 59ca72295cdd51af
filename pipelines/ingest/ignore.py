"""Which files of a repository become units: git's ignore rules and our skip rules. Pure, no I/O."""

from __future__ import annotations

import re
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
# Vendored or generated wherever they are: no project names its own source so.
VENDORED_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "jspm_packages",
        "_vendor",  # pip's, setuptools' own vendored packages
        "__pycache__",
        ".venv",
        "site-packages",
        ".tox",
        ".nox",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".gradle",
        ".next",
        ".nuxt",
    }
)
# Vendored or generated only at the top of a repository, where the tools put them (`vendor/` of
# Go, `build/` and `dist/` of setuptools, `target/` of Cargo and Maven); deeper down such a name is
# often real source (pip's src/pip/_internal/operations/build/). A .gitignore covers the rest.
VENDORED_AT_ROOT = frozenset({"vendor", "third_party", "dist", "build", "venv", "target"})
MINIFIED_SUFFIXES = (".min.js", ".min.mjs", ".min.css", ".map")
BINARY_SNIFF_BYTES = 8192  # git's own heuristic: a NUL in the first 8 KiB means binary


class RepoFailure(Exception):
    """The whole repository fails; ``str(exc)`` is the document's one-line reason."""


# --- gitignore -----------------------------------------------------------------------------


Rules = list[tuple[re.Pattern[str], str, bool]]  # (pathspec's regex, pattern text, excludes?)


def _rules(text: str) -> Rules:
    """One .gitignore's patterns, compiled by pathspec; malformed ones are dropped, as git does."""
    out: Rules = []
    for line in text.splitlines():
        try:
            (pat,) = GitIgnoreSpec.from_lines([line]).patterns or (None,)
        except ValueError:  # GitIgnorePatternError
            continue
        if pat is not None and pat.regex is not None and pat.include is not None:
            out.append((pat.regex, str(pat.pattern).rstrip(), pat.include))
    return out


def _exact(regex: re.Pattern[str], pattern: str, s: str) -> bool:
    """Whether a pattern matches ``s`` itself (a directory as "dir/"), not just an ancestor of it.

    pathspec's regexes are built for flat matching, so they also match everything below a matched
    directory; git never looks below an excluded directory, and a negation such as ``!dir`` must
    not re-include ``dir/x`` when ``x`` is excluded by its own name. Forms per pathspec 1.1.1.
    """
    rx = regex.pattern
    if rx == ".":  # "*", "**": everything
        return True
    if rx == "(?P<ps_d>/)":  # "*/", "**/": any directory
        return s.endswith("/")
    if rx == "/":  # "**/*/**": anything not at the top level
        return "/" in s.rstrip("/")
    if pattern.endswith("/**/") or (rx.endswith("/") and not rx.endswith("(?P<ps_d>/)")):
        # "dir/**" (and "dir/**/" for directories): strictly inside dir
        m = regex.search(s)
        return m is not None and m.end() < len(s) and (s.endswith("/") or not pattern.endswith("/"))
    return regex.fullmatch(s) is not None


class GitIgnore:
    """The .gitignore files of one tree, matched the way git does.

    A nested .gitignore's patterns are relative to its own directory and beat its ancestors';
    within one file the last matching pattern wins; nothing under an excluded directory can be
    re-included (git never looks inside it).
    """

    def __init__(self, files: Iterable[tuple[str, str]] = ()) -> None:
        self._rules: dict[str, Rules] = {}  # directory ("" = root) -> its rules
        self._dir_cache: dict[str, bool] = {}
        for path, text in files:
            self.add(path.rpartition("/")[0], text)

    def add(self, directory: str, text: str) -> None:
        """Rules of ``directory/.gitignore``."""
        self._rules[directory.strip("/")] = _rules(text)
        self._dir_cache.clear()

    def matches(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` itself is excluded, ignoring its ancestors' state."""
        parts = path.split("/")
        for depth in range(len(parts) - 1, -1, -1):  # deepest .gitignore first
            rules = self._rules.get("/".join(parts[:depth]))
            if not rules:
                continue
            rel = "/".join(parts[depth:]) + ("/" if is_dir else "")
            for regex, pattern, excludes in reversed(rules):  # the last matching pattern wins
                if _exact(regex, pattern, rel):
                    return excludes
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
    """The file ``paths`` git would list, given ``(path of a .gitignore, its text)`` pairs."""
    rules = GitIgnore(gitignores)
    return [p for p in paths if not rules.ignored(p)]


# --- skip rules ----------------------------------------------------------------------------


def vendored_dir(path: str) -> str | None:
    """The outermost vendored/generated directory containing file ``path`` (with a trailing /)."""
    parts = path.split("/")[:-1]
    for i, name in enumerate(parts):
        if is_vendored_dir(name, top=i == 0):
            return "/".join(parts[: i + 1]) + "/"
    return None


def is_vendored_dir(name: str, top: bool) -> bool:
    """``top``: the directory is at the repository's root."""
    return name in VENDORED_DIRS or name.endswith(".egg-info") or (top and name in VENDORED_AT_ROOT)


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
        raise RepoFailure(f"expanded size of kept files {n} bytes > max_archive_bytes={limits.max_archive_bytes}")


def readme_first_key(path: str) -> tuple[int, str]:
    """Sort key: top-level README* first, then by path (code-point order = UTF-8 byte order)."""
    top_readme = "/" not in path and path.lower().startswith("readme")
    return (0 if top_readme else 1, path)
