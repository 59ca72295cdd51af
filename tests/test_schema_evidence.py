"""Evidence in a schema: the wrapped schema the model decodes against, its bounds, and the
wrapped data taken apart into the user's data and the quotes to check."""

from __future__ import annotations

import copy
import json

import jsonschema

from schemas import builtin_schema
from schemas.bounds import max_output_tokens
from schemas.evidence import EVIDENCE, evidence_fields, split_evidence, with_evidence


def marked(name: str, fields: list[str]) -> dict:
    schema = copy.deepcopy(builtin_schema(name).json_schema)
    for f in fields:
        schema["properties"][f][EVIDENCE] = True
    return schema


def test_a_schema_without_marks_is_unchanged():
    schema = builtin_schema("paper").json_schema
    assert evidence_fields(schema) == [] and with_evidence(schema) is schema


def test_wrapped_paper_admits_quoted_values_and_takes_them_apart():
    schema = marked("paper", ["title", "authors", "year"])
    wrapped = with_evidence(schema)
    assert evidence_fields(wrapped) == ["title", "authors", "year"]
    q = lambda v, where="page 1": {"value": v, "quote": f"… {v} …", "where": where}  # noqa: E731
    data = {
        "title": q("A Study of Things"), "authors": [q("Jane Roe"), q("John Doe")], "year": None,
        "document_type": "paper", "summary": "s", "research_questions": [], "methods": [], "key_findings": [],
        "limitations": [],
    }  # fmt: skip
    jsonschema.validate(data, wrapped)
    plain, quotes = split_evidence(data, wrapped)
    assert builtin_schema("paper").validate(json.dumps(plain)) == plain  # the user's schema validates the data
    assert plain["authors"] == ["Jane Roe", "John Doe"] and plain["year"] is None  # null: not stated, no quote
    assert [(e["field"], e["index"], e["value"]) for e in quotes] == [
        ("title", None, "A Study of Things"),
        ("authors", 0, "Jane Roe"),
        ("authors", 1, "John Doe"),
    ]
    # a bare value where a quoted one is wanted is refused by the constraint
    bad = dict(data, title="A Study of Things")
    assert not jsonschema.Draft202012Validator(wrapped).is_valid(bad)


def test_the_budget_grows_by_the_quotes_and_stays_finite():
    plain, wrapped = builtin_schema("paper").json_schema, with_evidence(marked("paper", ["title", "authors"]))
    assert max_output_tokens(wrapped) > max_output_tokens(plain) + 21 * 160 // 3  # 21 values, each a quote more


def test_objects_behind_references_are_wrapped_whole():
    wrapped = with_evidence(marked("repo", ["components", "dependencies"]))
    component = {"name": "server", "path": "src/server.py", "purpose": "serves"}
    data = {
        "name": "tinykv", "purpose": "a store", "languages": ["Python"], "entry_points": [], "risks": [],
        "components": [{"value": component, "quote": "def serve(", "where": "src/server.py:4-4"}],
        "dependencies": [{"value": "socket", "quote": "import socket", "where": "src/server.py:1-1"}],
    }  # fmt: skip
    jsonschema.validate(data, wrapped)
    plain, quotes = split_evidence(data, wrapped)
    assert plain["components"] == [component] and plain["dependencies"] == ["socket"] and len(quotes) == 2
    assert builtin_schema("repo").validate(json.dumps(plain)) == plain
