"""``longctx plan`` end to end, through the installed console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines.tokenizer import llama3_tokenizer
from tests.clirun import longctx
from tests.pdfgen import lorem_pages, make_corrupt_pdf, make_encrypted_pdf, make_pdf
from tests.repogen import make_repo, make_zip

EXAMPLES = Path(__file__).parent.parent / "examples"


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    """The per-window, failed and ignored records; the last line, the cost estimate, left out."""
    assert proc.returncode == 0, proc.stderr
    return [rec for line in proc.stdout.splitlines() if "cost" not in (rec := json.loads(line))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_pdf(root / "long.pdf", lorem_pages(40), title="Long")
    make_encrypted_pdf(root / "locked.pdf", ["secret text"], user_password="pw")
    make_encrypted_pdf(root / "open.pdf", ["readable text"], user_password="")
    make_corrupt_pdf(root / "broken.pdf")
    (root / "notes.md").write_text("# Notes\n\nHello <|eot_id|> world.\n")
    files = {"README.md": "# Demo\n", "src/app.py": "print('hi')\n" * 50, "package-lock.json": "{}", "node_modules/x.js": "x"}
    make_zip(root / "demo.zip", files, prefix="demo-main/")
    make_repo(
        root / "checkout", {"README.md": "# Checkout\n", "main.py": "x = 1\n", ".gitignore": "*.tmp\n", "a.tmp": "t"}, git=True
    )
    return root


def test_plan_json_reports_every_document(corpus):
    recs = records(longctx("plan", str(corpus), "--json", "--max-model-len", "8192", "--max-output-tokens", "1024"))
    by_source = {}
    for r in recs:
        by_source.setdefault(Path(r["source"]).name, []).append(r)
    assert set(by_source) == {"long.pdf", "locked.pdf", "open.pdf", "broken.pdf", "notes.md", "demo.zip", "checkout"}
    assert by_source["locked.pdf"][0]["status"] == "failed"
    assert "encrypted" in by_source["locked.pdf"][0]["reason"]
    assert by_source["broken.pdf"][0]["reason"].startswith("corrupt PDF")
    assert by_source["open.pdf"][0]["status"] == "ok"
    long = by_source["long.pdf"]
    assert len(long) == long[0]["windows"] > 1
    assert [r["window"] for r in long] == list(range(len(long)))
    assert [u for r in long for u in r["units"]] == list(range(1, 41))
    for r in recs:
        if r["status"] == "ok":
            assert r["prompt_tokens"] <= r["max_model_len"] - r["max_output_tokens"]
            assert r["max_model_len"] == 8192 and r["doc_id"]
    demo = by_source["demo.zip"][0]
    assert demo["units"] == ["README.md", "src/app.py"]
    assert {s["reason"] for s in demo["skipped"]} == {"lockfile", "vendored or generated directory"}
    assert by_source["checkout"][0]["units"] == ["README.md", ".gitignore", "main.py"]  # README first; a.tmp ignored


def test_plan_dump_writes_exact_prompts(corpus, tmp_path):
    recs = records(
        longctx(
            "plan",
            str(corpus / "notes.md"),
            str(corpus / "long.pdf"),
            "--json",
            "--dump",
            str(tmp_path),
            "--max-model-len",
            "8192",
        )
    )
    tok = llama3_tokenizer()
    for r in recs:
        text = (tmp_path / f"{r['doc_id']}.{r['window']}.txt").read_text()
        ids = json.loads((tmp_path / f"{r['doc_id']}.{r['window']}.json").read_text())["token_ids"]
        assert len(ids) == r["prompt_tokens"]
        assert tok.decode(ids) == text
    notes = next(r for r in recs if r["source"].endswith("notes.md"))
    ids = json.loads((tmp_path / f"{notes['doc_id']}.0.json").read_text())["token_ids"]
    assert ids.count(128009) == 2  # the document's "<|eot_id|>" stayed text


def test_plan_table_on_the_examples():
    proc = longctx("plan", str(EXAMPLES))
    assert proc.returncode == 0, proc.stderr
    for name in ("field-report.pdf", "tinykv.tar.gz", "meeting-notes.md"):
        assert name in proc.stdout
    assert "3 documents (0 failed)" in proc.stdout


def test_plan_prices_the_windows_on_each_vllm_preset():
    plain = longctx("plan", str(EXAMPLES), "--json")
    assert all("source" in json.loads(line) for line in plain.stdout.splitlines())  # no cost line unless asked
    proc = longctx("plan", str(EXAMPLES), "--json", "--cost", "--gpu-hour-price", "4")
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.splitlines()[-1])["cost"]
    windows = records(proc)
    assert last["assumptions"] == {"mfu": 0.4, "bandwidth_use": 0.7, "gpu_hour_price": 4.0}
    assert [c["preset"] for c in last["presets"]] == ["8b-1gpu", "70b-4gpu", "405b-fp8-16gpu"]
    from pipelines.cost import preset_cost

    expected = preset_cost("8b-1gpu", [(w["prompt_tokens"], w["max_output_tokens"]) for w in windows])
    assert expected.gpu_hours > 0 and last["presets"][0]["gpu_hours"] == pytest.approx(expected.gpu_hours)
    assert last["presets"][0]["dollars"] == pytest.approx(4 * expected.gpu_hours)
    table = longctx("plan", str(EXAMPLES))
    assert "cost on vLLM, H100 80 GB" in table.stdout and "405b-fp8-16gpu" in table.stdout
    assert "2.50 USD a GPU-hour" in table.stdout  # the default, stated
    other = longctx("plan", str(EXAMPLES), "--model", "smollm2")
    assert other.returncode == 0 and "cost: not estimated" in other.stdout and "405b" not in other.stdout
    assert longctx("plan", str(EXAMPLES), "--gpu-hour-price", "-1").returncode == 2


def test_plan_prices_the_same_tokens_at_hosted_batch_rates_from_the_table_or_a_file(tmp_path):
    builtin = json.loads(longctx("plan", str(EXAMPLES), "--json", "--cost").stdout.splitlines()[-1])["cost"]["hosted_batch"]
    assert builtin["prices_date"] and "openai/gpt-4o-mini" in [m["model"] for m in builtin["models"]]
    prices = tmp_path / "prices.json"
    prices.write_text('{"date": "2027-01-01", "source": "ours", "prices": {"ours/m": {"input": 1000000, "output": 0}}}')
    proc = longctx("plan", str(EXAMPLES), "--json", "--cost", "--api-prices", str(prices))
    hosted = json.loads(proc.stdout.splitlines()[-1])["cost"]["hosted_batch"]
    prompt_tokens = sum(w["prompt_tokens"] for w in records(proc))
    assert hosted == {"prices_date": "2027-01-01", "models": [{"model": "ours/m", "dollars": prompt_tokens}]}
    prices.write_text('{"date": "2027-01-01"}')
    bad = longctx("plan", str(EXAMPLES), "--api-prices", str(prices))
    assert bad.returncode == 2 and "price file" in bad.stderr and "source" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["plan", "/no/such/path"], "no such file or directory"),
    (["plan", ".", "--schema", "nope"], "unknown schema"),
    (["plan", ".", "--max-model-len", "10"], "max-model-len"),
    (["schemas", "show", "nope"], "unknown schema"),
])  # fmt: skip
def test_bad_arguments_are_one_line_without_traceback(args, message):
    proc = longctx(*args)
    assert proc.returncode == 2  # as the README says
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_schemas_commands():
    proc = longctx("schemas", "list")
    assert proc.returncode == 0 and all(n in proc.stdout for n in ("paper", "contract", "repo"))
    shown = json.loads(longctx("schemas", "show", "contract").stdout)
    assert shown["title"] == "contract" and "parties" in shown["properties"]


@pytest.mark.parametrize("args, message", [
    (["run", "/no/such/path"], "no such file or directory"),
    (["run", ".", "--engine", "gpt9"], "unknown engine 'gpt9'"),
    (["run", ".", "--schema", "nope"], "unknown schema"),
    (["run", ".", "--model", "/no/model.gguf"], "/no/model.gguf"),
    (["run", str(EXAMPLES), "--engine", "vllm"], "pip install 'longctx[vllm]'"),  # preflight, before Ray
    (["run", str(EXAMPLES), "--engine", "vllm", "--engine-option", "model=x"], "set it as engine.model (--model)"),
    (["run", str(EXAMPLES), "--out", str(EXAMPLES / "meeting-notes.md")], "meeting-notes.md is a file, not a folder"),
    (["run", str(EXAMPLES), "--address", "127.0.0.1:1"], "cannot join the Ray cluster at 127.0.0.1:1: Connection refused"),
])  # fmt: skip
def test_run_bad_arguments_fail_before_any_work(args, message, tmp_path):
    proc = longctx(*args, *([] if "--out" in args else ["--out", str(tmp_path / "out")]))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_local_ray_that_does_not_start_is_one_line(tmp_path):
    """Ray's temporary folder is a file: its start fails, is tried once more, then one line; no result, no manifest."""
    import os

    (tmp_path / "not-a-folder").write_text("")
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "not-a-folder")}
    proc = longctx("run", str(EXAMPLES / "meeting-notes.md"), "--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: Ray did not start on this machine (2 tries): ") and "Not a directory" in line
    # Ray starts once the skip check has found work, under the output's lease: that is all that is written, released
    [lease] = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert lease.name == "_lease.json" and json.loads(lease.read_text())["released"] is True


def test_plan_with_a_gguf_packs_with_its_own_tokenizer_and_template(corpus, tmp_path):
    """A GGUF of Llama 3's vocabulary and chat (no weights: packing reads none) packs exactly as the
    built-in Llama 3.1 format; SmolLM2's GGUF packs with its own, into its own 8K context."""
    from pipelines.model_files import smollm2_path
    from tests.ggufgen import write_llama3_gguf

    llama3 = write_llama3_gguf(tmp_path / "llama3.gguf")
    builtin = records(longctx("plan", str(corpus / "long.pdf"), "--json"))
    same = records(longctx("plan", str(corpus / "long.pdf"), "--json", "--model", str(llama3)))
    # document_tokens differ by the slack the packer adds for a format whose parts it re-encodes together
    drop = lambda rows: [{k: v for k, v in r.items() if k != "document_tokens"} for r in rows]
    assert drop(same) == drop(builtin) and same[0]["prompt_tokens"] == builtin[0]["prompt_tokens"] > 10_000
    smol = records(longctx("plan", str(corpus / "long.pdf"), "--json", "--model", str(smollm2_path())))
    assert {w["max_model_len"] for w in smol} == {8192} and len(smol) > len(builtin) == 1
    assert all(w["prompt_tokens"] + w["max_output_tokens"] <= 8192 for w in smol)
    proc = longctx("plan", str(corpus), "--model", str(llama3), "--tokenizer", "x")
    assert proc.returncode == 2 and "not both" in proc.stderr
    (tmp_path / "bad.gguf").write_bytes(b"nope")
    proc = longctx("plan", str(corpus), "--model", str(tmp_path / "bad.gguf"))
    assert proc.returncode == 2 and "not a readable GGUF file" in proc.stderr
