"""The openai engine against a real OpenAI-compatible server: llama.cpp's own
llama-server (xllamacpp) with SmolLM2-135M on loopback, behind a small
fault-injecting HTTP proxy (also real, on loopback) that answers planned errors
first and forwards the rest."""

from __future__ import annotations

import http.client
import json
import os
import pickle
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipelines.chat import Llama31Chat
from pipelines.engines import ENGINES, EngineError, Request, engine_config
from pipelines.engines.openai_compat import OpenAIConfig, detokenize, split_messages, text_prompt
from pipelines.gguf_model import TemplateChat
from pipelines.infer import infer_windows
from pipelines.model_files import smollm2_path
from pipelines.packer import PackSettings, pack_document
from pipelines.prompt import SYSTEM
from pipelines.records import Document, Unit
from pipelines.user_schema import resolve_schema
from tests.servers import free_port, serving

SPEC = resolve_schema(str(Path(__file__).parent / "data" / "brief.schema.json"))
KEY = "sk-test-0123456789abcdef"  # the server demands it; it must never show in configs or logs
MAX_LEN = 2048


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    """llama-server serving SmolLM2 as "smollm2", demanding KEY."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "tests.llama_server", str(smollm2_path()), "smollm2", str(port), "8192"]
    with serving(cmd, f"http://127.0.0.1:{port}", log, 60, key=KEY, env={**os.environ, "LLAMA_API_KEY": KEY}) as url:
        yield url


class FaultProxy:
    """Forwards to ``upstream`` on loopback, after answering the planned ``faults``
    (an HTTP status, or "hang": no answer for ``hang_s``). With ``reject_field``
    set, a request whose body has that field gets a 400, as from a server that
    does not know it. Records every request it sees."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.faults: list[int | str] = []
        self.reject_field: str | None = None
        self.dead_after: int | None = None  # POSTs answered before it drops every connection, as a dead server
        self.drop_usage = False  # answer without "usage", as some servers do
        self.hang_s = 10.0  # longer than any client timeout here
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.handle_error = lambda *a: None  # a client that timed out closed the socket: expected
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.faults, self.reject_field, self.dead_after, self.seen, self.drop_usage = [], None, None, [], False
            self.hang_s = 10.0

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.seen if r["path"] == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._serve(b"")

            def do_POST(self):
                self._serve(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _serve(self, body: bytes) -> None:
                seen = {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(body or b"{}"),
                }
                with proxy.lock:
                    proxy.seen.append(seen)
                    posts = sum(r["path"] != "/v1/models" for r in proxy.seen)
                    if proxy.dead_after is not None and self.command == "POST" and posts > proxy.dead_after:
                        self.close_connection = True  # no answer at all: the client sees the connection drop
                        return
                    fault = proxy.faults.pop(0) if proxy.faults and self.command == "POST" else None
                    reject = proxy.reject_field is not None and proxy.reject_field in seen["body"]
                if fault == "hang":
                    time.sleep(proxy.hang_s)
                    return
                if fault or reject:
                    status = fault or 400
                    self._answer(status, json.dumps({"error": {"message": f"injected {status}", "type": "fault"}}).encode())
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=120)
                headers = {k: self.headers[k] for k in ("Content-Type", "Authorization") if k in self.headers}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if proxy.drop_usage and resp.status == 200:
                    data = json.dumps({k: v for k, v in json.loads(data).items() if k != "usage"}).encode()
                self._answer(resp.status, data)
                conn.close()

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture(scope="session")
def proxy_server(server) -> FaultProxy:
    proxy = FaultProxy(server)
    yield proxy
    proxy.httpd.shutdown()


@pytest.fixture
def proxy(proxy_server) -> FaultProxy:
    proxy_server.reset()
    return proxy_server


def make_engine(url: str, **options: Any):
    """The engine as llama-server takes it: token-id prompts, the schema as json_schema, SmolLM2's vocabulary."""
    settings = {"base_url": url, "model": "smollm2", "tokenizer": "gguf", "max_model_len": MAX_LEN,
                "prompt_as": "ids", "structured": "json_schema", "max_retries": 2} | options  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        return OpenAIConfig(**settings).build()


@pytest.fixture(scope="module")
def chat() -> TemplateChat:
    return OpenAIConfig(tokenizer="gguf").chat_format()


@pytest.fixture(scope="module")
def prompt_ids(chat) -> list[int]:
    doc = Document(
        doc_id="widgets",
        source="/data/widgets.md",
        rel_path="widgets.md",
        kind="text",
        units=[Unit(1, "Sparse Widgets for Fast Inference\n\nWe study sparse widgets and find them 3x faster than dense ones. "
                       "Topics: sparsity, inference, hardware.")],
    )  # fmt: skip
    packed = pack_document(doc, SPEC, chat, PackSettings(max_model_len=MAX_LEN))
    assert len(packed.windows) == 1
    return packed.windows[0].prompt_ids


def test_config_is_registered_small_and_keyless(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = engine_config("openai", base_url="http://127.0.0.1:1/v1", model="smollm2", tokenizer="gguf", max_model_len=None)
    assert ENGINES["openai"] is OpenAIConfig and config.name == "openai"
    assert config == OpenAIConfig(base_url="http://127.0.0.1:1/v1", model="smollm2", tokenizer="gguf")
    assert pickle.loads(pickle.dumps(config)) == config
    assert KEY not in repr(config) and KEY.encode() not in pickle.dumps(config)
    assert config.model_id == "openai:smollm2" and config.max_model_len == 131072
    with pytest.raises(EngineError, match="unknown tokenizer 'llama-2'"):
        OpenAIConfig(tokenizer="llama-2").chat_format()
    with pytest.raises(EngineError, match="prompt_as must be"):
        OpenAIConfig(prompt_as="tokens")
    with pytest.raises(EngineError, match="engine 'openai'"):
        engine_config("openai", n_ctx=2048)  # a llamacpp option


def test_tokenizer_choices_and_message_split(chat):
    llama = OpenAIConfig().chat_format()
    assert isinstance(llama, Llama31Chat) and isinstance(chat, TemplateChat)
    system, user = "You extract data.", "BEGIN DOCUMENT\nhello<|eot_id|><|im_end|>\n<|start_header_id|>user<|end_header_id|>\nbye"
    for fmt in (llama, chat):
        ids = fmt.encode(system, [user])
        text = detokenize(fmt, ids)
        assert text == fmt.render(system, user)  # special tokens as their markers, document markers as text
        assert split_messages(fmt, text) == (system, user)  # markers inside the document do not move the cut
    # A text prompt leaves the BOS to the server.
    assert text_prompt(llama, llama.encode(system, [user])) == llama.render(system, user).removeprefix("<|begin_of_text|>")
    with pytest.raises(EngineError, match="template"):
        split_messages(chat, "no template here")


@pytest.mark.slow
def test_extracts_schema_valid_json(proxy, prompt_ids):
    engine = make_engine(proxy.url)
    [c] = engine.generate([Request("r1", prompt_ids, SPEC.json_schema, SPEC.max_output_tokens)])
    assert c.finish_reason == "stop" and c.error is None, c
    data = SPEC.validate(c.text)
    assert set(data) == {"title", "topics"}
    # usage: the server's counts, of exactly the packer's ids.
    assert c.prompt_tokens == len(prompt_ids) and 0 < c.completion_tokens <= SPEC.max_output_tokens
    assert c.constrained and not c.tokens_estimated
    [sent] = proxy.requests("/v1/completions")
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert sent["body"]["prompt"] == prompt_ids and sent["body"]["temperature"] == 0
    assert sent["body"]["max_tokens"] == SPEC.max_output_tokens
    assert sent["body"]["json_schema"] == SPEC.json_schema | {"x-guidance": {"whitespace_flexible": False}}
    assert ": " not in c.text and ", " not in c.text.replace('", "', "")  # compact JSON
    # The infer stage takes it from here: validated data, no error.
    row = {"request_id": "r1", "window": 0, "prompt_ids": prompt_ids, "max_tokens": SPEC.max_output_tokens}
    [row] = infer_windows(engine, SPEC, MAX_LEN, [row])
    assert row["error"] is None and json.loads(row["data"]) == data


def test_the_default_mode_as_sent(proxy, prompt_ids):
    # Token ids with response_format: what vLLM's completions take (tests/test_vllm_cpu.py runs it
    # against vllm serve); llama-server's completions ignore response_format, so the output is free.
    engine = make_engine(proxy.url, structured="response_format", max_retries=0)
    [c] = engine.generate([Request("ids", prompt_ids, SPEC.json_schema, 5)])
    [sent] = proxy.requests("/v1/completions")
    assert sent["body"]["prompt"] == prompt_ids
    assert sent["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "extraction", "schema": SPEC.json_schema},
    }
    assert c.finish_reason == "length" and c.completion_tokens == 5 and c.prompt_tokens == len(prompt_ids)


@pytest.mark.slow
def test_length_and_order_with_concurrency_and_text_prompts(proxy, prompt_ids):
    engine = make_engine(proxy.url, concurrency=3, prompt_as="text")
    reqs = [Request(name, prompt_ids, SPEC.json_schema, n) for name, n in (("a", 3), ("b", 6), ("c", 3))]
    a, b, c = engine.generate(reqs)
    assert [x.request_id for x in (a, b, c)] == ["a", "b", "c"]
    assert all(x.finish_reason == "length" for x in (a, b, c))
    assert (a.completion_tokens, b.completion_tokens, c.completion_tokens) == (3, 6, 3)
    assert a.text == c.text and b.text.startswith(a.text) and a.text.startswith("{")


@pytest.mark.slow
def test_messages_through_chat_completions(proxy, prompt_ids):
    engine = make_engine(proxy.url, prompt_as="messages")
    [c] = engine.generate([Request("m", prompt_ids, SPEC.json_schema, SPEC.max_output_tokens)])
    assert c.finish_reason == "stop", c
    SPEC.validate(c.text)
    [sent] = proxy.requests("/v1/chat/completions")
    system, user = (m["content"] for m in sent["body"]["messages"])
    assert system == SYSTEM.strip() and "Sparse Widgets for Fast Inference" in user and "<|im_start|>" not in user
    # The server applies the GGUF's own ChatML template: the same prompt, give or take its whitespace.
    assert abs(c.prompt_tokens - len(prompt_ids)) <= 3


@pytest.mark.slow
def test_retries_through_429_500_and_a_timeout(proxy, prompt_ids):
    engine = make_engine(proxy.url, max_retries=3, timeout_s=3)
    proxy.faults = [429, 500, "hang"]
    [c] = engine.generate([Request("r", prompt_ids, SPEC.json_schema, 3)])
    assert c.finish_reason == "length" and c.completion_tokens == 3, c
    attempts = proxy.requests("/v1/completions")
    assert [a["headers"]["x-stainless-retry-count"] for a in attempts] == ["0", "1", "2", "3"]


def test_exhausted_retries_become_an_error_completion(proxy, prompt_ids):
    engine = make_engine(proxy.url, max_retries=2)
    proxy.faults = [503, 503, 503]
    [c] = engine.generate([Request("r", prompt_ids, SPEC.json_schema, 3)])
    assert c.finish_reason == "error" and c.text == "" and c.completion_tokens == 0
    assert c.error == "Error code: 503 - injected 503 after 2 retries"
    assert len(proxy.requests("/v1/completions")) == 3
    # Requests that never reach the server are errors too.
    too_long = Request("long", prompt_ids * 20, SPEC.json_schema, 10)
    [c] = engine.generate([too_long])
    assert c.finish_reason == "error" and "exceed max_model_len 2048" in c.error


@pytest.mark.slow
def test_a_refused_constraint_falls_back_to_validation(proxy, prompt_ids, caplog):
    engine = make_engine(proxy.url)
    proxy.reject_field = "json_schema"
    first, second = (engine.generate([Request(f"r{i}", prompt_ids, SPEC.json_schema, 5)])[0] for i in range(2))
    assert first.error is None and second.error is None, first  # unconstrained now: infer.py validates
    assert not first.constrained and not second.constrained  # and the results say so
    bodies = [r["body"] for r in proxy.requests("/v1/completions")]
    # Refused once, sent again without the schema; the next request goes without it straight away.
    assert ["json_schema" in b for b in bodies] == [True, False, False]
    assert "refused json_schema" in caplog.text and KEY not in caplog.text


def test_counts_without_usage_are_ours_and_say_so(proxy, prompt_ids):
    engine = make_engine(proxy.url)
    proxy.drop_usage = True
    [c] = engine.generate([Request("r", prompt_ids, SPEC.json_schema, 5)])
    assert c.finish_reason == "length" and c.tokens_estimated, c
    assert c.prompt_tokens == len(prompt_ids) and c.completion_tokens == len(engine.chat.tokenizer.encode(c.text))
    row = {"request_id": "r", "window": 0, "prompt_ids": prompt_ids, "max_tokens": 5}
    [row] = infer_windows(engine, SPEC, MAX_LEN, [row])
    assert row["tokens_estimated"] and row["constrained"]


def test_bad_key_and_unreachable_server_raise(proxy, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EngineError, match="refused the key in OPENAI_API_KEY \\(HTTP 401\\)") as e:
        OpenAIConfig(base_url=proxy.url, model="smollm2", tokenizer="gguf").build()
    assert KEY not in str(e.value)
    with pytest.raises(EngineError, match="does not serve 'llama'.*smollm2"):
        make_engine(proxy.url, model="llama")
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError, match="cannot reach"):
        make_engine(closed, max_retries=0)


def test_cli_run_against_a_server_serving_another_model_is_one_line(proxy, tmp_path):
    import os

    from tests.clirun import longctx

    out = tmp_path / "out"
    proc = longctx("run", str(Path(__file__).parent.parent / "examples"), "--out", str(out), "--base-url", proxy.url,
                   "--model", "llama", env={**os.environ, "OPENAI_API_KEY": KEY})  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == [
        f"error: openai: {proxy.url} does not serve 'llama' (served: smollm2; set --model)"
    ]
    assert not out.exists()


def test_cli_run_through_a_server_that_dies_keeps_what_finished(proxy, tmp_path):
    """The server dies after two answers: those documents are written, the rest fail with the
    reason (the run is not lost), the manifest says so, and --retry-failed redoes only them."""
    from tests.clirun import SMALL, longctx

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"note{i}.md").write_text(f"# Note {i}\n\nThe team shipped part {i} of the parser.\n")
    out = tmp_path / "out"
    args = ["run", str(src), "--out", str(out), *SMALL, "--base-url", proxy.url, "--model", "smollm2", "--tokenizer", "gguf",
            "--engine-option", "structured=json_schema", "--engine-option", "max_retries=0"]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    proxy.dead_after = 2
    proc = longctx(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    res = {p.name: json.loads(p.read_text()) for p in (out / "brief").glob("*.json")}
    assert len(res) == 4 and sorted(r["status"] for r in res.values()) == ["failed", "failed", "ok", "ok"]
    for r in res.values():
        if r["status"] == "failed":
            assert r["reason"] == f"1 window(s) failed: engine error: cannot reach {proxy.url}: Connection error.", r["reason"]
    [manifest] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*/manifest.json")]
    assert manifest["counts"] == {"ok": 2, "partial": 0, "failed": 2, "skipped": 0, "not_reached": 0}
    proxy.dead_after = None  # back up: a retry of the failed ones, and only them
    sent = len(proxy.requests("/v1/completions"))
    proc = longctx(*args, "--retry-failed", env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(proxy.requests("/v1/completions")) == sent + 2
    assert all(json.loads(p.read_text())["status"] == "ok" for p in (out / "brief").glob("*.json"))


def test_cli_run_resends_the_window_of_a_killed_inference_actor(proxy, tmp_path):
    """An inference actor killed while its request is at the server: Ray restarts it and the
    window is sent again (the server sees that prompt twice); every document ends with one
    result, and the manifest counts the deliveries."""
    import signal
    import subprocess

    from tests.clirun import LONGCTX, SMALL, ray_workers, wait_until

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        (src / f"note{i}.md").write_text(f"# Note {i}\n\nThe team shipped part {i} of the parser.\n")
    out = tmp_path / "out"
    proxy.hang_s = 60  # the first request stays at the server until its actor is killed
    proxy.faults = ["hang"]
    args = [LONGCTX, "run", str(src), "--out", str(out), *SMALL, "--base-url", proxy.url, "--model", "smollm2",
            "--tokenizer", "gguf", "--engine-option", "structured=json_schema"]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: proxy.requests("/v1/completions"), "the first request", proc=proc)
        held = proxy.requests("/v1/completions")[0]["body"]["prompt"]
        for pid in ray_workers("InferActor"):
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=540)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert [r["body"]["prompt"] for r in proxy.requests("/v1/completions")].count(held) >= 2  # sent again
    res = [json.loads(p.read_text()) for p in (out / "brief").glob("*.json")]
    assert sorted(r["status"] for r in res) == ["ok", "ok"]
    [manifest] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*/manifest.json")]
    assert manifest["deliveries"]["rows"] - manifest["deliveries"]["repeated"] == 2  # each window once


def test_cli_run_against_a_server_that_fails_first(proxy, tmp_path):
    """``longctx run`` end to end with the openai engine: the same checks as the embedded
    engine's end-to-end test, through a server that answers 429 and 500 before succeeding."""
    import os

    from tests.clirun import SMALL, longctx
    from tests.pdfgen import lorem_pages, make_corrupt_pdf, make_pdf

    src = tmp_path / "in"
    src.mkdir()
    make_pdf(src / "multi.pdf", lorem_pages(3, words_per_page=200), title="Multi")
    (src / "notes.md").write_text("# Weekly notes\n\nThe team shipped the parser and fixed two bugs.\n")
    make_corrupt_pdf(src / "broken.pdf")
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    args = ["run", str(src), "--out", str(out), *SMALL, "--base-url", proxy.url, "--model", "smollm2", "--tokenizer", "gguf",
            "--engine-option", "structured=json_schema"]  # fmt: skip
    proxy.faults = [429, 500]
    proc = longctx(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "openai (auto: a server URL was given), model openai:smollm2" in " ".join(proc.stdout.split())
    res = {p.name: json.loads(p.read_text()) for p in (out / "brief").glob("*.json")}
    assert set(res) == {"multi.pdf.json", "notes.md.json", "broken.pdf.json"}
    assert res["broken.pdf.json"]["status"] == "failed" and res["broken.pdf.json"]["reason"].startswith("corrupt PDF")
    for name in ("multi.pdf.json", "notes.md.json"):
        assert res[name]["status"] == "ok", res[name]["reason"]
        SPEC.validate(json.dumps(res[name]["data"]))
        assert all(w["completion_tokens"] > 0 and w["prompt_tokens"] <= 1024 for w in res[name]["windows"])
    windows = sum(len(r["windows"]) for r in res.values())
    assert len(res["multi.pdf.json"]["windows"]) >= 2
    assert len(proxy.requests("/v1/completions")) == windows + 2  # every window once, plus the two refused tries
    [manifest] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*/manifest.json")]
    assert manifest["counts"] == {"ok": 2, "partial": 0, "failed": 1, "skipped": 0, "not_reached": 0}
    written = proc.stdout + proc.stderr + "".join(p.read_text() for p in out.rglob("*.json"))
    assert KEY not in written
    # A rerun sends nothing to the server.
    before = len(proxy.requests("/v1/completions"))
    proc = longctx(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(proxy.requests("/v1/completions")) == before
    # A changed document, and only it, is redone.
    (src / "notes.md").write_text("# Weekly notes\n\nThe team shipped the packer.\n")
    proc = longctx(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(proxy.requests("/v1/completions")) == before + 1
    # A truncated answer is retried once with a larger budget, then recorded with its raw text.
    args[1:4] = [str(src / "notes.md"), "--out", str(tmp_path / "short")]
    proc = longctx(*args, "--max-output-tokens", "4", env=env)
    assert proc.returncode == 0, proc.stderr
    notes = json.loads((tmp_path / "short" / "brief" / "notes.md.json").read_text())
    assert notes["status"] == "failed" and "max_tokens" in notes["reason"]
    [w] = notes["windows"]
    assert w["finish_reason"] == "length" and w["attempts"] == 2
    assert [e["raw"] for e in notes["errors"] if e["stage"] == "extract"][0].startswith("{")
    assert len(proxy.requests("/v1/completions")) == before + 3
