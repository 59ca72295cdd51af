"""Evidence in a schema: the wrapped schema the model decodes against, its bounds, and the
wrapped data taken apart into the user's data and the quotes to check."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from schemas import builtin_schema
from schemas.bounds import max_output_tokens
from schemas.evidence import EVIDENCE, evidence_fields, split_evidence, with_evidence


def marked(name: str, fields: list[str]) -> dict:
    """A built-in schema with exactly ``fields`` marked."""
    schema = copy.deepcopy(builtin_schema(name).json_schema)
    for f, node in schema["properties"].items():
        node.pop(EVIDENCE, None)
        if f in fields:
            node[EVIDENCE] = True
    return schema


def test_a_schema_without_marks_is_unchanged():
    schema = marked("paper", [])
    assert evidence_fields(schema) == [] and with_evidence(schema) is schema


@pytest.mark.parametrize(
    "name, fields",
    [
        ("paper", ["title", "year", "key_findings"]),
        ("contract", ["parties", "effective_date", "term", "governing_law", "liability_cap"]),
        ("repo", ["name", "entry_points"]),
    ],
)
def test_the_built_in_schemas_ask_evidence_for_their_main_fields(name, fields):
    spec = builtin_schema(name)
    assert evidence_fields(spec.json_schema) == fields
    assert EVIDENCE not in json.dumps(spec.decode_schema)  # the decoder never sees our keyword
    assert spec.max_output_tokens > max_output_tokens(marked(name, []))  # the quotes are in the budget


def test_parse_takes_the_model_output_apart_and_validates_the_data():
    spec = builtin_schema("paper")
    q = lambda v: {"value": v, "quote": f"… {v} …", "where": "page 2"}  # noqa: E731
    out = {
        "title": q("A Study"), "authors": ["Jane Roe"], "year": q(2019), "document_type": None, "summary": "s",
        "research_questions": [], "methods": [], "key_findings": [q("42% faster")], "limitations": [],
    }  # fmt: skip
    jsonschema.validate(out, spec.decode_schema)
    data, quotes = spec.parse(json.dumps(out))
    assert data["title"] == "A Study" and data["year"] == 2019 and data["key_findings"] == ["42% faster"]
    assert [(e["field"], e["index"], e["quote"]) for e in quotes] == [
        ("title", None, "… A Study …"), ("year", None, "… 2019 …"), ("key_findings", 0, "… 42% faster …"),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        spec.parse(json.dumps(out | {"year": q("not a year")}))  # the user's validator still decides
    with pytest.raises(ValueError):
        spec.parse("[1, 2]")


def test_wrapped_paper_admits_quoted_values_and_takes_them_apart():
    schema = marked("paper", ["title", "authors", "year"])
    wrapped = with_evidence(schema)
    assert evidence_fields(schema) == ["title", "authors", "year"] and EVIDENCE not in json.dumps(wrapped)
    q = lambda v, where="page 1": {"value": v, "quote": f"… {v} …", "where": where}  # noqa: E731
    data = {
        "title": q("A Study of Things"), "authors": [q("Jane Roe"), q("John Doe")], "year": None,
        "document_type": "paper", "summary": "s", "research_questions": [], "methods": [], "key_findings": [],
        "limitations": [],
    }  # fmt: skip
    jsonschema.validate(data, wrapped)
    plain, quotes = split_evidence(data, schema)
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
    plain, wrapped = marked("paper", []), with_evidence(marked("paper", ["title", "authors"]))
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
    plain, quotes = split_evidence(data, marked("repo", ["components", "dependencies"]))
    assert plain["components"] == [component] and plain["dependencies"] == ["socket"] and len(quotes) == 2
    assert builtin_schema("repo").validate(json.dumps(plain)) == plain
