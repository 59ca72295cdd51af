"""Secrets in document text are masked right after loading, so no prompt, result, log or manifest can
hold one: the model never sees the value, so it cannot echo it into ``data`` or a ``raw`` error either.

``mask_secrets(text)`` replaces each detected value with ``[REDACTED:<kind>]`` and returns findings as
(kind, line) pairs, never values. Only the value is replaced (``password = "[REDACTED:generic-secret]"``,
``https://user:[REDACTED:url-password]@host``); everything else stays byte-identical. A masked span keeps
the line breaks it held (a 27-line PEM block becomes the marker followed by its 26 line breaks), so the
file's line count and every later line number stay true for the model's references.

Every kind is masked in every document kind (repository files, PDF pages, text notes): a secret reaches the
prompt from a PDF as easily as from a file, and the check is cheap next to parsing and tokenizing.

Speed and linear time: every pattern starts with a literal, which `re` finds as fast as ``str.find``;
a left-boundary lookbehind after that literal lets a match start only where a run of token characters
starts; every quantifier is bounded and no repetition is nested ambiguously, so no position is walked
more than a bounded number of times, whatever the input. About 12 ns per byte on 1M tokens of generated
code and 18 on real Python sources (the Llama 3 tokenizer: about 50 on the same code); tests/test_secrets.py
checks the speed, and inputs built to make a backtracking regex go quadratic.

Why not a library: detect-secrets (Yelp; 1.5.0, May 2024, the last release) is offline but a scanner,
not a masker: it reports (line, hashed secret), so the value must be searched for again to mask it; its
settings are process-global; it runs every plugin's regexes plus allowlist regexes on every line, and
its own tracker has reports of scans taking minutes to hours (Yelp/detect-secrets#868: quadratic on long
runs of spaces; IBM/detect-secrets#192: 69% of the time in per-line allowlist regexes). Measured here on
the same generated code, its default plugins scan at about 3,200 ns per byte, some 270 times slower than
this module, and still mask nothing. ggshield calls GitGuardian's API (not offline); trufflehog on PyPI
(2.2.1, 2021) is unmaintained; presidio and llm-guard bring NLP models. A small, tested set of precise
patterns fits better.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator

from pipelines.records import Document

MARKER = "[REDACTED:{}]"

Span = tuple[int, int]  # [start, end) of a value in the text
Finder = Callable[[str, str, bool], Iterator[Span]]  # (text, its lowercase of the same length, bare values?) -> spans

# Speed: `re` finds a literal prefix as fast as `str.find` (about 0.4 ns/byte here), but an alternation,
# a character class or IGNORECASE at the start makes it try the pattern at every position (6+ ns/byte).
# So every pattern starts with a literal, and its left boundary is a lookbehind placed after that literal
# (e.g. "eyJ(?<![\w-]eyJ)"): a match starts only where a run of token characters starts, so a long run is
# walked once, not once per position. Keys in any case are matched in the lowercased text.


def _regex_finder(pattern: str, check: Callable[[str, bool], bool] | None = None, lower: bool = False) -> Finder:
    """Spans of group "v" (a quoted value), else "u" (a bare value), else the whole match; ``check``
    gets the value as written and whether it was quoted."""
    rx = re.compile(pattern)
    groups = [g for g in ("v", "u") if g in rx.groupindex]

    def find(text: str, low: str, bare: bool) -> Iterator[Span]:
        for m in rx.finditer(low if lower else text):  # positions in low are positions in text
            g = next((g for g in groups if m.group(g) is not None), 0)
            if g == "u" and not bare:
                continue
            s, e = m.span(g)
            if check is None or check(text[s:e], g == "v"):
                yield s, e

    return find


def _token(prefix: str, body: str, chars: str = "A-Za-z0-9_-") -> Finder:
    """A token format: a literal prefix, then ``body``, not inside a longer run of ``chars``."""
    p = re.escape(prefix)
    return _regex_finder(f"{p}(?<![{chars}]{p}){body}(?![{chars}])", lambda v, _: not _TOKEN_PLACEHOLDER.search(v))


# --- values that need their context ---------------------------------------------------------------------

# Keys match at the END of an identifier (DB_PASSWORD, clientSecret, "api_key": ...), so password_field,
# token_type or tokenizer do not.
_ASSIGN = r"""(?![a-z0-9_])["'\]]{0,2}[ \t]{0,8}(?:=>|:=|=(?!=)|:(?!:))[ \t]{0,8}"""
_VALUE = (
    r"""(?:[bru]{0,2}(?P<q>["'`])(?P<v>[^"'`\s\\]{8,512})(?P=q)"""  # quoted
    r"""|(?P<u>[^\s"'`,;&:.(){}\[\]<>$\\]{12,512})(?![^\s,;&]))"""  # bare: .env, YAML, INI, ?password=...&
)
_KEY_WORDS = [f"{w}{sep}" for w in ("api", "access", "private", "auth", "secret") for sep in ("", "_", "-")]
_GENERIC_KEYS = [
    "pass(?:word|wd|phrase|(?<![a-z0-9]pass))",  # DB_PASS, but not bypass
    "pwd(?<![a-z0-9]pwd)",
    "secret",
    "token",
    "credentials?",
    "key(?:" + "|".join(f"(?<={re.escape(w)}key)" for w in _KEY_WORDS) + ")",  # api_key, secretKey, ...
]

# the AWS secret's key names all contain secret_access_key (aws_secret_access_key, SecretAccessKey)
_AWS_SECRET = r"""secret[_-]?access[_-]?key""" + _ASSIGN + r"""(?P<q>["'`]?)(?P<v>[A-Za-z0-9/+]{40})(?P=q)(?![A-Za-z0-9/+=])"""

# user:password@host in a URL; only the password is masked
_URL_RX = re.compile(r"""://(?P<user>[^\s:/@"'`<>\\]{0,128}):(?P<v>[^\s/@"'`<>\\]{1,256})@[A-Za-z0-9\[]""")

_BEARER = r"bearer(?<![a-z0-9_-]bearer)[ \t]{1,4}(?P<v>[a-z0-9._~+/-]{20,2048}=*)(?![a-z0-9._~+/=-])"


def _url_finder(text: str, low: str, bare: bool) -> Iterator[Span]:
    for m in _URL_RX.finditer(text):
        pw = m.group("v")
        if _is_placeholder(pw) or pw.lower() in _WORDS or (pw.isdigit() and len(pw) <= 5):  # a port
            continue
        if pw == m.group("user") or any(w in pw.lower() for w in ("password", "passwd", "secret")):
            continue  # guest:guest, postgres:postgres: a default; smb://me:mypassword@host: a placeholder
        yield m.span("v")


# --- PEM private keys -----------------------------------------------------------------------------------

# BEGIN, then lines that look like PEM (base64, or "Header: value"), then END. Line breaks may be real,
# escaped ("\n" in a JSON string) or end one string literal and open the next ("...\n" + "..."). A
# BEGIN that only names the format (a parser's constant: "-----BEGIN RSA PRIVATE KEY-----") has no
# base64 after it and is left alone; a block without END (a cut file) is masked as far as its lines go.
_PEM_BREAK = r"""(?:\\n["'`][ \t]*[+,]?[ \t]*\r?\n[ \t]*["'`]|\\r\\n|\\n|\r?\n)"""
_PEM = re.compile(
    r"-----BEGIN (?P<label>(?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?)-----"
    r"(?P<body>(?:" + _PEM_BREAK + r"[ \t]*(?:(?:[A-Za-z][A-Za-z-]{0,40}:[^\r\n\\]{0,200}|[A-Za-z0-9+/=]{1,200})[ \t]*)?)*)"
    r"(?:-----END (?P=label)-----)?"
)  # fmt: skip
_PEM_DATA = re.compile(r"[A-Za-z0-9+/=]{8}")


def _pem_finder(text: str, low: str, bare: bool) -> Iterator[Span]:
    for m in _PEM.finditer(text):
        if _PEM_DATA.search(m.group("body")):
            yield m.span()


# --- plausibility ---------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"example|sample|dummy|placeholder|change_?me|your[_-]|<|>|\$\{|\{\{|%\(|%s|\.\.\.|…|xxxx|\*\*\*|redacted|fake|"
    r"^\{|\}$|^\$|(.)\1{5}",  # templates ({password}, $DB_PASS); aaaaaa, 000000
    re.IGNORECASE,
)
# a token format's own placeholders (AKIAIOSFODNN7EXAMPLE, ghp_xxxx...); the wider list above would
# hit random base64 in long tokens now and then
_TOKEN_PLACEHOLDER = re.compile(r"example|(.)\1{5}", re.IGNORECASE)
# values that are words, not secrets ("password": "password", url user:pass@)
_WORDS = frozenset(["password", "passwd", "pass", "pwd", "secret", "token", "changeme", "admin", "root", "user", "test"])


def _is_placeholder(value: str) -> bool:
    return _PLACEHOLDER.search(value) is not None


def _entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _classes(value: str) -> int:
    """How many of lower, upper, digit, symbol occur; '_' and '-' join words, so they do not count."""
    lower = upper = digit = other = False
    for ch in value:
        if ch.islower():
            lower = True
        elif ch.isupper():
            upper = True
        elif ch.isdigit():
            digit = True
        elif ch not in "_-":
            other = True
    return lower + upper + digit + other


_WORDISH = re.compile(r"[A-Za-z]+(?:[-_./: ][A-Za-z]+)+")  # X-API-Key, auth.credentials.Name, etc/passwd
_CAMEL = re.compile(r"[a-z]*(?:[A-Z][a-z]{2,})+")  # ExclusiveStartKey, nextPageToken


def _looks_secret(value: str, quoted: bool) -> bool:
    """A generic assignment's value: long and random enough, and not a placeholder, a word or a path."""
    low = value.lower()
    if _is_placeholder(value) or any(w in low for w in ("password", "passwd", "secret", "token", "test")):
        return False
    if _WORDISH.fullmatch(value) or _CAMEL.fullmatch(value) or value.startswith(("/", "./", "../", "~/")):
        return False
    has_digit = any(c.isdigit() for c in value)
    if not quoted:  # from a config file: ask for letters and digits and more randomness
        return has_digit and any(c.isalpha() for c in value) and _entropy(value) >= 3.3
    if not has_digit:  # random tokens without a digit are long; words and names are not random
        return len(value) >= 16 and _classes(value) >= 2 and _entropy(value) >= 3.5
    return _classes(value) >= 2 and _entropy(value) >= (3.0 if len(value) >= 12 else 2.5)


def _aws_secret_ok(value: str, _: bool) -> bool:
    return not _is_placeholder(value) and _entropy(value) >= 3.5


# Order is priority: where two detectors claim the same span, the earlier kind names it.
_FINDERS: list[tuple[str, Finder]] = [
    ("private-key", _pem_finder),
    ("aws-access-key-id", _token("AKIA", "[A-Z0-9]{16}", "A-Za-z0-9")),
    ("aws-access-key-id", _token("ASIA", "[A-Z0-9]{16}", "A-Za-z0-9")),
    ("github-token", _token("gh", "[pousr]_[A-Za-z0-9]{36,251}", "A-Za-z0-9_")),
    ("github-token", _token("github_pat_", "[A-Za-z0-9_]{22,244}", "A-Za-z0-9_")),
    ("gitlab-token", _token("glpat-", "[A-Za-z0-9_-]{20,64}")),
    ("slack-token", _token("xox", "[abposr]-[0-9]{6,20}-[A-Za-z0-9-]{8,200}")),
    ("google-api-key", _token("AIza", "[A-Za-z0-9_-]{35}")),
    ("stripe-key", _token("sk_", "(?:live|test)_[A-Za-z0-9]{24,247}", "A-Za-z0-9_")),
    ("stripe-key", _token("rk_", "(?:live|test)_[A-Za-z0-9]{24,247}", "A-Za-z0-9_")),
    ("anthropic-key", _token("sk-ant-", "[a-z]{3,8}[0-9]{2}-[A-Za-z0-9_-]{32,200}")),
    ("openai-key", _token("sk-", "[A-Za-z0-9_-]{20,200}T3BlbkFJ[A-Za-z0-9_-]{20,200}")),
    ("huggingface-token", _token("hf_", "[A-Za-z]{34}", "A-Za-z0-9_")),
    ("npm-token", _token("npm_", "[A-Za-z0-9]{36}", "A-Za-z0-9_")),
    ("pypi-token", _token("pypi-AgE", "[A-Za-z0-9_-]{50,1000}")),
    # header.payload.signature in base64url; header and payload are JSON, so both start with eyJ ('{"')
    ("jwt", _token("eyJ", r"[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{16,1024}")),
    ("aws-secret-access-key", _regex_finder(_AWS_SECRET, _aws_secret_ok, lower=True)),
    ("url-password", _url_finder),
    ("bearer-token", _regex_finder(_BEARER, lambda v, _: _looks_secret(v, True), lower=True)),
    *[("generic-secret", _regex_finder(k + _ASSIGN + _VALUE, _looks_secret, lower=True)) for k in _GENERIC_KEYS],
]

_BREAKS = re.compile(r"\r\n|\r|\n")


def _lower(text: str) -> str:
    """Lowercase with the same length, so positions found in it hold in ``text``; the few characters
    whose lowercase is longer (U+0130) are kept as they are."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(lc := c.lower()) != 1 else lc for c in text)


def find_secrets(text: str, bare_values: bool = True) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) of every secret, in text order. ``bare_values``: also unquoted
    values of secret-named keys (.env, YAML, INI); in source code such a value is an expression."""
    low = _lower(text)
    found: list[tuple[int, int, int, str]] = []
    for rank, (kind, finder) in enumerate(_FINDERS):
        found += [(s, -e, rank, kind) for s, e in finder(text, low, bare_values)]
    found.sort()  # earliest first; of those, the longest; of equal spans, the higher-priority kind
    spans: list[tuple[int, int, str]] = []
    for s, neg_e, _, kind in found:
        if not spans or s >= spans[-1][1]:
            spans.append((s, -neg_e, kind))
    return spans


def mask_secrets(text: str, bare_values: bool = True) -> tuple[str, list[tuple[str, int]]]:
    """``text`` with each secret value replaced by ``[REDACTED:<kind>]`` (line breaks inside the value
    kept), and the findings as (kind, 1-based line) in text order; no value is returned."""
    spans = find_secrets(text, bare_values)
    if not spans:
        return text, []
    parts: list[str] = []
    findings: list[tuple[str, int]] = []
    pos, line = 0, 1
    for s, e, kind in spans:
        line += text.count("\n", pos, s)
        findings.append((kind, line))
        parts += [text[pos:s], MARKER.format(kind), *_BREAKS.findall(text, s, e)]
        line += text.count("\n", s, e)
        pos = e
    parts.append(text[pos:])
    return "".join(parts), findings


# Languages where a secret in the source is a quoted literal: there a bare value after "token =" is code
# (token = make_token()), so only quoted values count. Config files, scripts and prose keep bare values.
CODE_SUFFIXES = frozenset({
    "py", "pyi", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "java", "kt", "kts", "scala", "rs", "c", "h", "cc", "cpp",
    "hpp", "cs", "rb", "php", "swift", "m", "mm", "lua", "r", "jl", "dart", "ex", "exs", "erl", "hs", "ml", "clj", "groovy",
    "vue", "svelte",
})  # fmt: skip


def mask_document_secrets(doc: Document) -> Document:
    """Mask every unit of ``doc`` in place; where anything was masked, ``doc.meta["masked"]`` lists
    {"path", "kinds", "count"} per unit (path: the repository file, else the document's rel_path; PDFs add
    "page"). Values are never recorded."""
    masked: list[dict] = []
    for unit in doc.units:
        path = str(unit.ref) if doc.kind == "repo" else doc.rel_path
        bare = "." not in path or path.rpartition(".")[2].lower() not in CODE_SUFFIXES
        text, findings = mask_secrets(unit.text, bare)
        if not findings:
            continue
        unit.text = text
        entry: dict = {"path": path}
        if doc.kind == "pdf":
            entry["page"] = unit.ref
        masked.append(entry | {"kinds": sorted({k for k, _ in findings}), "count": len(findings)})
    if masked:
        doc.meta["masked"] = masked
    return doc
