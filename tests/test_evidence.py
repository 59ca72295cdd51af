"""Evidence quotes checked against the source text: both branches, and the offsets they give."""

from __future__ import annotations

import json
import random

import pytest

from pipelines.evidence import Span, locate, normalise

PAGES = [
    Span(1, "A Study of Things\nJane Roe, John Doe\n\nWe measure the through-\nput of the system."),
    Span(2, "Results\n\nThroughput  rose by\t 42%  over\nthe   baseline in 2019."),
]
FILES = [
    Span("README.md", "# tinykv\n\nA small key-value store.\n"),
    Span("src/server.py", "import socket\n\n\ndef serve(port: int = 8080):\n    sock = socket.socket()\n    sock.bind(port)\n"),
]


def test_a_verbatim_quote_verifies_with_its_page_and_offsets():
    found = locate("Jane Roe, John Doe", PAGES)
    assert found and found.exact and found.unit == 1 and found.where == "page 1"
    assert PAGES[0].text[found.start : found.end] == "Jane Roe, John Doe"


def test_whitespace_and_hyphenation_are_normalised_and_the_offsets_still_point_at_the_source():
    found = locate("rose by 42% over the baseline", PAGES)
    assert found and not found.exact and found.unit == 2
    assert PAGES[1].text[found.start : found.end] == "rose by\t 42%  over\nthe   baseline"
    hyphen = locate("We measure the throughput of the system.", PAGES)
    assert hyphen and hyphen.unit == 1 and PAGES[0].text[hyphen.start : hyphen.end].endswith("through-\nput of the system.")


def test_a_file_quote_gives_its_path_and_line_range():
    found = locate("def serve(port: int = 8080):\n    sock = socket.socket()", FILES)
    assert found and found.where == "src/server.py:4-5" and found.lines == (4, 5)
    assert locate("A small key-value store.", FILES).where == "README.md:3-3"


@pytest.mark.parametrize(
    "altered",
    [
        "Throughput rose by 43% over the baseline",  # a number changed
        "Jane Roe, John Smith",  # a name changed
        "We measure the latency of the system.",  # a word changed
        "the baseline in 2019. And more.",  # runs past the text
        "   ",  # blank
    ],
)
def test_an_altered_quote_is_not_verified(altered: str):
    assert locate(altered, PAGES) is None


def test_random_spans_of_the_source_always_verify_exactly_where_they_are():
    rng = random.Random(7)
    for _ in range(200):
        unit = rng.choice(PAGES + FILES)
        a = rng.randrange(len(unit.text) - 5)
        span = unit.text[a : a + rng.randrange(5, 40)].strip()
        if not span:
            continue
        found = locate(span, PAGES + FILES)
        assert found is not None
        assert span in next(u.text for u in PAGES + FILES if u.ref == found.unit)[found.start : found.end]


def test_normalise_maps_every_character_back():
    text = "exam-\n  ple \u00adtext\n\n end"
    norm, at = normalise(text)
    assert norm == "example text end"
    assert len(at) == len(norm) and all(text[i] == c for i, c in zip(at, norm, strict=True) if c != " ")


def test_quotes_are_checked_in_the_window_they_came_from_and_kept_through_the_merge():
    """Both branches through the stages: a document of two windows, a scripted engine whose
    quotes are copied from the text, re-spaced, altered, or from the other window; the
    result keeps each value's quotes, at its index in the merged data, and counts them."""
    from pipelines.chat import Llama31Chat
    from pipelines.engines.base import Completion
    from pipelines.infer import infer_windows
    from pipelines.packer import PackSettings, pack_document
    from pipelines.records import Document, Unit
    from pipelines.results import RunIdentity, document_result
    from pipelines.tokenizer import llama3_tokenizer
    from schemas import builtin_schema

    spec = builtin_schema("paper")
    filler = " ".join(f"word{i}" for i in range(900))
    pages = [
        "A Study of Things\nJane Roe\n\nWe measure the through-\nput of the system in 2019. " + filler,
        filler + "\n\nResults: throughput  rose by 42%\nover the baseline.",
    ]
    doc = Document("d", "/data/d.pdf", "d.pdf", "pdf", units=[Unit(i + 1, p) for i, p in enumerate(pages)])
    settings = PackSettings(max_model_len=spec.max_output_tokens + 2600)
    windows = pack_document(doc, spec, Llama31Chat(llama3_tokenizer()), settings).windows
    assert [w.units for w in windows] == [[1], [2]]
    q = lambda v, quote: {"value": v, "quote": quote, "where": "page ?"}  # noqa: E731
    rest = {"authors": [], "document_type": None, "summary": "s", "research_questions": [], "methods": [], "limitations": []}
    answers = {
        "d:0": rest
        | {
            "title": q("A Study of Things", "A Study of Things"),
            "year": q(2019, "the throughput of the system in 2019"),
            "key_findings": [q("faster", "We measure the speed")],
        },
        "d:1": rest
        | {
            "title": q("A Study of Things", "A Study of Things"),
            "year": None,
            "key_findings": [q("42% over the baseline", "throughput rose by 42% over the baseline."), q("faster", "faster")],
        },
    }

    class Scripted:
        def generate(self, requests):
            return [Completion(r.request_id, json.dumps(answers[r.request_id]), "stop", len(r.prompt_ids), 9) for r in requests]

    rows = [
        {"request_id": f"d:{w.index}", "doc_id": "d", "window": w.index, "prompt_ids": w.prompt_ids, "max_tokens": 64,
         "prompt_tokens": w.prompt_tokens, "units": w.units, "texts": json.dumps([s.to_row() for s in w.spans])}
        for w in windows
    ]  # fmt: skip
    rows = infer_windows(Scripted(), spec, settings.max_model_len, rows)
    first = {e["field"]: e for e in json.loads(rows[0]["evidence"])}
    assert first["title"]["verified"] and first["title"]["exact"] and first["title"]["found"] == "page 1"
    assert pages[0][first["title"]["start"] : first["title"]["end"]] == "A Study of Things"
    year = first["year"]  # hyphenation across a line end, normalised: verified, not exact, offsets in the page
    assert year["verified"] and not year["exact"] and pages[0][year["start"] : year["end"]].startswith("the through-\nput")
    assert not first["key_findings"]["verified"] and first["key_findings"]["found"] is None  # altered: flagged, kept
    # A quote is checked against the window it came from: the title is on page 1, not in window 1.
    assert [(e["field"], e["verified"]) for e in json.loads(rows[1]["evidence"])][0] == ("title", False)

    info = {"source": doc.source, "doc_id": "d", "status": "ok", "reason": None, "skipped": [], "source_key": "k"}
    result = document_result(RunIdentity("paper", "h", "m", "c", "p", 1, 1, "l"), spec.json_schema, spec.validate, info, rows)
    assert result["data"]["key_findings"] == ["faster", "42% over the baseline"]
    ev = result["evidence"]
    by = {(e["field"], e["index"], e["window"]): e["verified"] for e in ev["quotes"]}
    assert by == {
        ("title", None, 0): True, ("title", None, 1): False, ("year", None, 0): True,
        ("key_findings", 0, 0): False, ("key_findings", 0, 1): False, ("key_findings", 1, 1): True,
    }  # fmt: skip
    # Values: title and year verified (title by window 0), the second finding verified, "faster" not.
    assert (ev["verified"], ev["unverified"], ev["missing"]) == (3, 1, 0)
