"""The retry and recording policy, with a scripted engine: the policy is a pure
function of the completions, so no model is needed here (the end-to-end tests
run the real one)."""

from pipelines.engines.base import Completion
from pipelines.infer import infer_windows
from schemas import builtin_schema

SPEC = builtin_schema("repo")
GOOD = '{"name":null,"purpose":"p","languages":[],"components":[],"entry_points":[],"dependencies":[],"risks":[]}'


class Scripted:
    """Answers each call from a list of (finish_reason, text) per request id."""

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = []

    def generate(self, requests):
        self.calls.append([(r.request_id, r.max_tokens) for r in requests])
        out = []
        for r in requests:
            reason, text = self.script[r.request_id].pop(0)
            out.append(Completion(r.request_id, text, reason, len(r.prompt_ids), 7, "boom" if reason == "error" else None))
        return out


def row(rid, window=0, prompt_len=100, max_tokens=50):
    return {"request_id": rid, "doc_id": "d", "window": window, "prompt_ids": [1] * prompt_len, "max_tokens": max_tokens}


def test_valid_first_time():
    eng = Scripted({"a": [("stop", GOOD)]})
    [r] = infer_windows(eng, SPEC, 1000, [row("a")])
    assert r["error"] is None and r["attempts"] == 1 and '"purpose": "p"' in r["data"]
    assert len(eng.calls) == 1


def test_truncated_is_retried_with_a_larger_budget_then_recorded():
    eng = Scripted({"a": [("length", '{"name":"xxxx'), ("length", '{"name":"xxxxxxxx')]})
    [r] = infer_windows(eng, SPEC, 1000, [row("a")])
    assert eng.calls == [[("a", 50)], [("a", 100)]]
    assert r["attempts"] == 2 and r["data"] is None
    assert "max_tokens" in r["error"] and r["raw"] == '{"name":"xxxxxxxx'


def test_invalid_then_valid_on_retry():
    eng = Scripted({"a": [("stop", '{"name": 5}'), ("stop", GOOD)]})
    [r] = infer_windows(eng, SPEC, 1000, [row("a")])
    assert r["error"] is None and r["attempts"] == 2 and r["raw"] is None


def test_no_room_for_a_larger_budget_is_said():
    eng = Scripted({"a": [("length", "{")]})
    [r] = infer_windows(eng, SPEC, 150, [row("a")])  # 100 prompt + 50 output: no room
    assert len(eng.calls) == 1 and "no room" in r["error"] and r["raw"] == "{"


def test_engine_errors_and_pass_through_rows():
    eng = Scripted({"a": [("error", "")]})
    failed_doc = {"request_id": "f", "doc_id": "f", "window": -1}
    out = infer_windows(eng, SPEC, 1000, [row("a"), failed_doc])
    assert out[0]["error"] == "engine error: boom" and len(eng.calls) == 1
    assert out[1] == failed_doc
