"""Evidence quotes checked against the source text: both branches, and the offsets they give."""

from __future__ import annotations

import random

import pytest

from pipelines.evidence import locate, normalise
from pipelines.records import Unit

PAGES = [
    Unit(1, "A Study of Things\nJane Roe, John Doe\n\nWe measure the through-\nput of the system."),
    Unit(2, "Results\n\nThroughput  rose by\t 42%  over\nthe   baseline in 2019."),
]
FILES = [
    Unit("README.md", "# tinykv\n\nA small key-value store.\n"),
    Unit("src/server.py", "import socket\n\n\ndef serve(port: int = 8080):\n    sock = socket.socket()\n    sock.bind(port)\n"),
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
