"""``longctx eval``: the scoring rules as pure functions, and the command over a results
folder laid out as ``longctx run`` writes one, against the generated gold set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.evaluate import FieldScore, field_means, overlap, score_document, score_list, score_value
from schemas import builtin_schema
from tests.clirun import longctx
from tests.goldgen import GOLD, write_gold_set

PAPER = builtin_schema("paper").json_schema
REPO = builtin_schema("repo").json_schema


def test_scalars_are_exact_after_case_and_whitespace():
    kind = PAPER["properties"]["document_type"]
    assert score_value("Technical  Report.", "technical report", kind) == 1.0
    assert score_value("technical note", "technical report", kind) == 0.0
    assert score_value(2022, 2022) == 1.0 and score_value(2021, 2022) == 0.0 and score_value("2022", 2022) == 0.0


def test_titles_and_free_text_by_token_overlap():
    title = PAPER["properties"]["title"]
    assert score_value("Sparse routing for document transformers", "Sparse Routing for Document Transformers", title) == 1.0
    assert score_value("Sparse Routing", "Sparse Routing for Document Transformers", title) == pytest.approx(4 / 7)  # p 1, r 2/5
    assert overlap("", "") == 1.0 and overlap("x", "") == 0.0 and overlap("a b", "c d") == 0.0


def test_null_gold_means_not_stated_and_a_made_up_value_scores_zero():
    assert score_value(None, None) == 1.0 and score_value([], None) == 1.0
    assert score_value(2021, None) == 0.0  # invented


def test_lists_by_precision_and_recall():
    authors = PAPER["properties"]["authors"]
    f1, p, r = score_list(["ada ruiz", "Someone Else"], ["Ada Ruiz", "Tomas Berg"], authors)
    assert (p, r) == (0.5, 0.5) and f1 == 0.5
    assert score_list(["Ada Ruiz", "Ada Ruiz"], ["Ada Ruiz"], authors)[1:] == (0.5, 1.0)  # a repeat matches once
    assert score_list([], [], authors) == (1.0, 1.0, 1.0) and score_list(["x"], [], authors)[0] == 0.0
    # Objects: the mean over the gold item's fields.
    entry = REPO["properties"]["entry_points"]
    got = [{"kind": "cli", "name": "wc-cli", "path": "wordcount/cli.py"}, {"kind": "library", "name": "wordcount", "path": None}]
    assert score_list(got, [{"name": "wc-cli"}], entry)[1:] == (0.5, 1.0)


def test_a_failed_result_scores_zero_and_means_are_per_field():
    gold = {"title": "T", "authors": ["A"], "year": None}
    assert [s.score for s in score_document(None, gold, PAPER)] == [0.0, 0.0, 0.0]
    good = score_document({"title": "T", "authors": ["A"], "year": None}, gold, PAPER)
    assert [(s.field, s.score) for s in good] == [("title", 1.0), ("authors", 1.0), ("year", 1.0)]
    assert good[1] == FieldScore("authors", 1.0, 1.0, 1.0)
    assert field_means([good, score_document(None, gold, PAPER)]) == {"title": 0.5, "authors": 0.5, "year": 0.5}


def _result(schema: str, data: dict | None, status: str = "ok") -> str:
    return json.dumps({"schema": schema, "status": status, "data": data})


def test_the_command_against_the_generated_gold_set(tmp_path: Path):
    _, gold = write_gold_set(tmp_path / "set")
    out = tmp_path / "out"
    for key, fields in GOLD.items():  # a perfect run: every gold value, and nulls where not stated
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        schema = key.split("/")[0]
        data = {f: (v if f != "entry_points" else [{"kind": "cli", "name": e["name"], "path": None} for e in v])
                for f, v in fields.items()}  # fmt: skip
        (out / key).write_text(_result(schema, data))
    proc = longctx("eval", str(out), str(gold))
    assert proc.returncode == 0, proc.stderr
    assert "5 documents, 8 fields, mean 1.000" in proc.stdout
    # One result wrong in its year and missing an author; one failed; one missing.
    (out / "paper/routing.pdf.json").write_text(_result("paper", {**GOLD["paper/routing.pdf.json"], "year": 2021,
                                                                  "authors": ["Ada Ruiz"]}))  # fmt: skip
    (out / "paper/cooling.pdf.json").write_text(_result("paper", None, "failed"))
    (out / "repo/healthd.zip.json").unlink()
    proc = longctx("eval", str(out), str(gold), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["gold"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows["paper/routing.pdf.json"]["fields"] == {"title": 1.0, "authors": pytest.approx(2 / 3, abs=1e-4),
                                                        "year": 0.0, "document_type": 1.0}  # fmt: skip
    assert set(rows["paper/cooling.pdf.json"]["fields"].values()) == {0.0}
    assert rows["repo/healthd.zip.json"]["status"] == "missing"
    text = longctx("eval", str(out), str(gold)).stdout
    assert "no result for 1: repo/healthd.zip.json" in " ".join(text.split())


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "is not a folder"),
    (lambda d: d.mkdir(), "no gold files"),
    (lambda d: (d.mkdir(), (d / "x.json").write_text("{half")), "x.json: not valid JSON"),
    (lambda d: (d.mkdir(), (d / "x.json").write_text("[1]")), "x.json: expected a JSON object"),
])  # fmt: skip
def test_bad_gold_is_one_line(make, message, tmp_path: Path):
    make(tmp_path / "gold")
    proc = longctx("eval", str(tmp_path), str(tmp_path / "gold"))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
