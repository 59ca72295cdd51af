"""Secret masking: each kind found and masked alone, placeholders and code left alone, linear time,
and no value reaching a document's units, its result record or a dumped prompt."""

from __future__ import annotations

import json
import random
import string
from array import array
from pathlib import Path

import pytest

from pipelines.engines import engine_config
from pipelines.graph import GraphSpec, parse_and_pack
from pipelines.ingest import IngestLimits, load_document
from pipelines.packer import PackSettings
from pipelines.records import SourceRef
from pipelines.results import RunIdentity, document_result
from pipelines.secrets import mask_secrets
from schemas import builtin_schema
from tests.clirun import longctx
from tests.pdfgen import make_pdf
from tests.repogen import make_repo, synth_repo_files

# Fake values, built at run time so this file holds no whole token for a scanner (or longctx) to find.
_rng = random.Random(7)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
DIGITS = string.digits


def rand(n: int, chars: str = ALNUM) -> str:
    return "".join(_rng.choice(chars) for _ in range(n))


AWS_ID = "AK" + "IA" + rand(16, string.ascii_uppercase + string.digits)
AWS_SECRET = rand(40, B64)
GH = "gh" + "p_" + rand(36)
JWT = "ey" + "JhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "ey" + "JzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvIn0." + rand(43, ALNUM + "_-")
PEM_LINES = [rand(64, B64) for _ in range(25)] + [rand(20, B64) + "=="]


def pem(label: str = "RSA PRIVATE KEY", sep: str = "\n") -> str:
    return sep.join([f"-----BEGIN {label}-----", *PEM_LINES, f"-----END {label}-----"])


ENCRYPTED_PEM = pem("RSA PRIVATE KEY").replace("\n", "\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n", 1)
PGP_KEY = (
    pem("PGP PRIVATE KEY BLOCK")
    .replace("\n", "\nVersion: GnuPG v2\n\n", 1)
    .replace("\n-----END", "\n=" + rand(4, B64) + "\n-----END")
)


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# (kind, text before, secret, text after): the secret alone is replaced; before and after stay as they are
POSITIVES = [
    ("aws-access-key-id", "AWS_ACCESS_KEY_ID=", AWS_ID, "\n"),
    ("aws-access-key-id", '{"AccessKeyId": "', "AS" + "IA" + rand(16, string.ascii_uppercase + string.digits), '"}'),
    ("aws-secret-access-key", "[default]\naws_secret_access_key = ", AWS_SECRET, "\nregion = eu-west-1\n"),
    ("aws-secret-access-key", '{"SecretAccessKey": "', rand(40, B64), '", "x": 1}'),
    ("aws-secret-access-key", 'export AWS_SECRET_ACCESS_KEY="', rand(40, B64), '"\n'),
    ("private-key", 'KEY = """', pem(), '"""\nprint(KEY)\n'),
    ("private-key", "", pem("OPENSSH PRIVATE KEY"), "\n"),
    ("private-key", "", pem("PRIVATE KEY", "\r\n"), "\r\nnext line\r\n"),
    ("private-key", '{"type": "service_account", "private_key": "', pem("PRIVATE KEY", "\\n"), '\\n", "x": 1}'),
    ("private-key", 'KEY = (\n    "', pem("RSA PRIVATE KEY", '\\n"\n    "'), '\\n"\n)\n'),
    ("private-key", "", ENCRYPTED_PEM, "\n"),
    ("private-key", "", PGP_KEY, ""),
    ("private-key", "cut here:\n", "-----BEGIN EC PRIVATE KEY-----\n" + "\n".join(PEM_LINES[:3]), ""),  # no END
    ("github-token", 'token = "', GH, '"\n'),
    ("github-token", "GITHUB_TOKEN: ", "gh" + "s_" + rand(36), "\n"),
    ("github-token", "pat=", "github" + "_pat_" + rand(22) + "_" + rand(59), " done"),
    ("gitlab-token", "CI_TOKEN=", "gl" + "pat-" + rand(20, ALNUM + "_-"), "\n"),
    ("slack-token", "SLACK_BOT_TOKEN=", "xo" + "xb-" + rand(11, DIGITS) + "-" + rand(12, DIGITS) + "-" + rand(24), ""),
    ("google-api-key", "const key = '", "AI" + "za" + rand(35, ALNUM + "_-"), "';\n"),
    ("stripe-key", 'stripe.api_key = "', "sk" + "_live_" + rand(24), '"\n'),
    ("stripe-key", "STRIPE=", "rk" + "_live_" + rand(24), "\n"),
    ("openai-key", "OPENAI_API_KEY=", "sk-" + "proj-" + rand(40, ALNUM + "_-") + "T3Blbk" + "FJ" + rand(40, ALNUM + "_-"), "\n"),
    ("anthropic-key", "ANTHROPIC_API_KEY=", "sk-" + "ant-api03-" + rand(93, ALNUM + "_-") + "AA", "\n"),
    ("huggingface-token", "login(token='", "hf" + "_" + rand(34, string.ascii_letters), "')\n"),
    ("npm-token", "//registry.npmjs.org/:_authToken=", "np" + "m_" + rand(36), "\n"),
    ("pypi-token", "password = ", "py" + "pi-AgEIcHlwaS5vcmc" + rand(60, ALNUM + "_-"), "\n"),
    ("jwt", "curl -H 'Authorization: Bearer ", JWT, "' https://api.internal/v1\n"),
    ("bearer-token", 'headers = {"Authorization": "Bearer ', rand(32), '"}\n'),
    ("url-password", 'DATABASE_URL = "postgres://app:', "q7Lm2xV9pR", '@db.internal:5432/app"\n'),
    ("url-password", "redis://:", "Zt8wQ1nB5k", "@cache:6379/0\n"),
    ("url-password", "git clone https://deploy:", "Vr4nT9xq2LpW", "@git.internal/org/repo.git\n"),
    ("generic-secret", 'DB_PASSWORD="', "Xk9#mP2qL7vR", '"\n'),
    ("generic-secret", '{"client_secret": "', rand(32), '", "id": 3}'),
    ("generic-secret", "SECRET_KEY = '", rand(50, ALNUM + "!@#%^&*(-_=+)"), "'\n"),
    ("generic-secret", "api_key: ", rand(32, "0123456789abcdef"), "\n"),
    ("generic-secret", "const apiKey = `", rand(24), "`;\n"),
    ("generic-secret", "'password' => '", "Zx81!pQ0rT", "',\n"),
    ("generic-secret", 'token := "', rand(30), '"\n'),
    ("generic-secret", "SENTRY_AUTH_TOKEN=", rand(64, "0123456789abcdef"), "\n"),
    ("generic-secret", "MYSQL_PASS=", "Zq81mXr2Lp0vQ7", "\n"),
    ("generic-secret", "https://x.io/login?user=bob&password=", "Zq81mXr2Lp0v", "&next=/ ok"),
]


@pytest.mark.parametrize(("kind", "before", "secret", "after"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_each_kind_is_masked_and_nothing_else_changes(kind, before, secret, after):
    masked, findings = mask_secrets(before + secret + after)
    breaks = "".join(c for c in secret if c in "\r\n")  # a masked span keeps its line breaks
    assert masked == before + marker(kind) + breaks + after
    assert secret not in masked and findings == [(kind, before.count("\n") + 1)]
    assert masked.count("\n") == (before + secret + after).count("\n")


NEGATIVES = [
    "AWS_ACCESS_KEY_ID=AK" + "IAIOSFODNN7EXAMPLE",  # AWS's documentation examples
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    'api_key = "<your-api-key>"',
    'token = "${GITHUB_TOKEN}"',
    "token: ${{ secrets.GITHUB_TOKEN }}",
    'password = os.environ["DB_PASSWORD"]',
    'password = os.getenv("DB_PASSWORD")',
    'API_KEY = os.environ.get("API_KEY", "")',
    'password = "xxxxxxxxxxxx"',
    'password: "********"',
    'secret = "changeme"',
    'password = "password123"',
    'password = "hunter2"',  # short, low entropy: a test fixture's kind of password
    "token = tokenizer.encode(text)",
    'token_type = "bearer"',
    'password_field = "password-input-2"',
    "self.token = token",
    "def get_token(self) -> str:",
    'API_KEY_HEADER = "X-Api-Key"',
    "SECRET_NAME = prod/db/credentials",
    'bypass = "Zq81mXr2Lp0vQ7"',
    "pass\nx = 1",
    'password_hash = "$2b$12$' + rand(53) + '"',
    "token = make_token_for_user",
    "api_key = settings.api_key",
    'f"postgres://{user}:{password}@{host}/db"',
    "postgres://user:password@localhost/db",
    "https://${USER}:${PASS}@example.com/repo",
    "http://localhost:8080/health and https://example.com:443/x",
    "git@github.com:org/repo.git",
    "gh" + "p_" + "x" * 36,
    "xo" + "xb-your-bot-token-here",
    "Authorization: Bearer $TOKEN",
    "Authorization: Bearer <token>",
    "hf_hub_download(repo_id, filename)",
    "npm_config_cache=/tmp/npm",
    'if line == "-----BEGIN RSA PRIVATE KEY-----":\n    start = True\nelif line == "-----END RSA PRIVATE KEY-----":\n    pass',
    "-----BEGIN PUBLIC KEY-----\n" + "\n".join(PEM_LINES[:4]) + "\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + "\n".join(PEM_LINES[:4]) + "\n-----END CERTIFICATE-----",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----",  # documentation, no key
    'commit = "e83c5163316f89bfbde7d9ab23ca2e25604af290"',
    "ey" + "JhbGciOiJIUzI1NiJ9 alone is not a token",
    'api_key = "X-API-Key"',  # names, words and paths in secret-named fields
    'ACL_CREDENTIALS = "Access-Control-Allow-Credentials"',
    '"input_token": "ExclusiveStartBackupArn"',
    'symlinks = {"pkg/passwd": "../../etc/passwd"}',
    'REQUEST_TYPE_ACCESS_TOKEN = "auth-request-type/at"',
    "amqp://guest:guest@localhost:5672",  # defaults and placeholders in URLs
    "smb://myuser:mypassword@server/share",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_placeholders_and_code_are_left_alone(text):
    assert mask_secrets(text) == (text, [])


def test_bare_values_count_only_where_they_are_literals():
    line = f"credentials: oauth2_client_{rand(12)}\n"  # a YAML value, or a Python annotation / dict entry
    assert mask_secrets(line, bare_values=False) == (line, [])
    assert mask_secrets(line)[1] == [("generic-secret", 1)]


def test_generated_code_has_no_findings():
    for text in synth_repo_files(60, 120, seed=3).values():
        assert mask_secrets(text) == (text, [])


def test_findings_carry_kind_and_line_and_line_numbers_hold():
    code = synth_repo_files(1, 60, seed=1)
    lines = next(iter(code.values())).splitlines(keepends=True)
    lines.insert(10, f'AWS_KEY = "{AWS_ID}"\n')
    lines.insert(30, f"KEY = '''{pem()}'''\n")
    lines.insert(50, f"url = 'https://bot:{GH}@github.com/x'\n")
    text = "".join(lines)
    masked, findings = mask_secrets(text)
    assert findings == [("aws-access-key-id", 11), ("private-key", 31), ("github-token", 51 + pem().count("\n"))]
    assert masked.count("\n") == text.count("\n")
    for secret in (AWS_ID, GH, *PEM_LINES):
        assert secret not in masked
    expected = text.replace(AWS_ID, marker("aws-access-key-id")).replace(GH, marker("github-token"))
    assert masked == expected.replace(pem(), marker("private-key") + "\n" * pem().count("\n"))


@pytest.mark.parametrize(
    "text",
    [
        "eyJ" * 70_000,
        "eyJ" + "a" * 200_000,
        ("-----BEGIN RSA PRIVATE KEY-----\n" + "A" * 150 + "\n") * 1_000,
        "-----BEGIN RSA PRIVATE KEY-----" + "\\n" * 100_000,
        "://a:" * 40_000,
        "://" + "a" * 100_000 + ":" + "b" * 100_000,
        "password=" * 20_000,
        "password = '" + "a" * 200_000,
        "token " * 30_000,
        "AKIA" * 50_000,
        "ghp_" * 50_000,
        "sk-" + "a" * 200_000,
        "bearer " + "a" * 200_000,
        " " * 200_000 + "x",
        "a" * 200_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_adversarial_inputs_keep_their_lines(text):
    # Their cost per byte is bench/scaling.py's (a ratio against ordinary code); here, what comes back.
    masked, findings = mask_secrets(text)
    assert masked.count("\n") == text.count("\n")  # masking keeps line numbers true
    assert all(1 <= line <= text.count("\n") + 1 for _, line in findings)


# --- documents, results and prompts ---------------------------------------------------------------------

ENV_KEY = rand(32, "0123456789abcdef")
SETTINGS = f'"""Settings."""\n\nAWS_ACCESS_KEY_ID = "{AWS_ID}"\nAWS_SECRET_ACCESS_KEY = "{AWS_SECRET}"\nREGION = "eu-west-1"\n'
FILES = {
    "README.md": "# Demo\n\nA demo service.\n",
    "app/settings.py": SETTINGS,
    "deploy/key.pem": pem() + "\n",
    "app/main.py": "from app.settings import REGION\n\nprint(REGION)\n",
    "app/auth.py": "def login(user):\n    token = issue_token_v2(user)\n    return token\n",  # code: an expression
    ".env": f"DEBUG=1\nAPI_KEY={ENV_KEY}\n",  # config: a bare literal
}
SECRETS = [AWS_ID, AWS_SECRET, ENV_KEY, *PEM_LINES]
MASKED = [
    {"path": ".env", "kinds": ["generic-secret"], "count": 1},
    {"path": "app/settings.py", "kinds": ["aws-access-key-id", "aws-secret-access-key"], "count": 2},
    {"path": "deploy/key.pem", "kinds": ["private-key"], "count": 1},
]


@pytest.fixture
def repo(tmp_path) -> SourceRef:
    root = make_repo(tmp_path / "demo", FILES, git=True)  # a checkout: the CLI lists it as one repository
    return SourceRef(str(root), str(tmp_path), "demo", "repo")


def test_repository_files_are_masked_not_dropped(repo):
    doc = load_document(repo)
    assert doc.status == "ok" and not doc.skipped
    units = {u.ref: u.text for u in doc.units}
    assert set(units) == set(FILES)
    for clean in ("app/main.py", "app/auth.py", "README.md"):
        assert units[clean] == FILES[clean]
    assert units[".env"] == f"DEBUG=1\nAPI_KEY={marker('generic-secret')}\n"
    assert units["app/settings.py"] == SETTINGS.replace(AWS_ID, marker("aws-access-key-id")).replace(
        AWS_SECRET, marker("aws-secret-access-key")
    )
    assert units["deploy/key.pem"] == marker("private-key") + "\n" * (len(PEM_LINES) + 2)
    assert sorted(doc.meta["masked"], key=lambda m: m["path"]) == MASKED
    assert not any(s in json.dumps(doc.to_row()) for s in SECRETS)


def test_pdf_pages_and_text_notes_are_masked_too(tmp_path):
    make_pdf(tmp_path / "a.pdf", ["A clean page.", f"Our deploy token is {GH} for now."])
    doc = load_document(SourceRef(str(tmp_path / "a.pdf"), str(tmp_path), "a.pdf", "pdf"))
    assert doc.meta["masked"] == [{"path": "a.pdf", "page": 2, "kinds": ["github-token"], "count": 1}]
    assert GH not in doc.units[1].text and marker("github-token") in doc.units[1].text
    (tmp_path / "notes.md").write_text(f"# Notes\n\nkey: {AWS_ID}\n")
    doc = load_document(SourceRef(str(tmp_path / "notes.md"), str(tmp_path), "notes.md", "text"))
    assert doc.units[0].text == f"# Notes\n\nkey: {marker('aws-access-key-id')}\n"
    assert doc.meta["masked"] == [{"path": "notes.md", "kinds": ["aws-access-key-id"], "count": 1}]


def test_prompt_rows_and_result_carry_the_masked_files_but_no_value(repo):
    schema = builtin_schema("repo")
    spec = GraphSpec(schema, engine_config("llamacpp", max_model_len=4096), PackSettings(4096, 512), IngestLimits())
    item = {"ref": json.dumps({"uri": repo.uri, "root": repo.root, "rel_path": repo.rel_path, "kind": "repo"}), "source_key": "k"}
    rows = parse_and_pack(item, spec)
    prompt = "".join(spec.engine.chat_format().tokenizer.decode(array("i", r["prompt"]).tolist()) for r in rows)
    assert marker("aws-access-key-id") in prompt and marker("private-key") in prompt
    assert not any(s in prompt for s in SECRETS)
    doc = json.loads(rows[0]["doc"])
    assert sorted(doc["masked"], key=lambda m: m["path"]) == MASKED
    good = json.dumps({"name": "demo", "purpose": "p", "languages": ["py"], "components": [], "entry_points": [],
                       "dependencies": [], "risks": []})  # fmt: skip
    windows = [
        {"window": r["window"], "units": json.loads(r["units"]), "prompt_tokens": r["prompt_tokens"], "completion_tokens": 5,
         "finish_reason": "stop", "attempts": 1, "data": good, "error": None, "raw": None}
        for r in rows
    ]  # fmt: skip
    ident = RunIdentity("repo", schema.hash, "m", "chat", "1", 4096, 512, "limits")
    result = document_result(ident, schema.json_schema, schema.validate, doc, windows)
    assert result["status"] == "ok" and sorted(result["masked_files"], key=lambda m: m["path"]) == MASKED
    assert not any(s in json.dumps(result) for s in SECRETS)


def test_plan_dump_prompts_hold_the_marker_not_the_secret(repo, tmp_path):
    dump = tmp_path / "dump"
    proc = longctx("plan", repo.uri, "--schema", "repo", "--json", "--dump", str(dump), "--max-model-len", "8192")
    assert proc.returncode == 0, proc.stderr
    prompts = [p.read_text() for p in sorted(Path(dump).glob("*.txt"))]
    text = "".join(prompts)
    assert marker("aws-access-key-id") in text and marker("aws-secret-access-key") in text and marker("private-key") in text
    assert not any(s in text or s in proc.stdout or s in proc.stderr for s in SECRETS)
