import json

import pytest
from pydantic import BaseModel

from pipelines.user_schema import SchemaError, resolve_schema
from schemas import BUILTIN, UnboundedSchemaError, builtin_schema, max_json_chars, max_output_tokens


class Unbounded(BaseModel):
    notes: list[str]


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_schemas_are_bounded(name):
    spec = builtin_schema(name)
    assert spec.name == name and spec.description
    assert 500 < spec.max_output_tokens < 4000  # fits beside a document even in an 8K context

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "string":
                assert "maxLength" in node
            if node.get("type") == "array":
                assert "maxItems" in node
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec.json_schema)


def test_output_budget_follows_the_bounds():
    small = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 10}}}
    big = {
        "type": "object",
        "properties": {"a": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 100}}},
    }
    assert max_json_chars(small) == 2 + 1 + 4 + 2 + 11
    assert max_output_tokens(big) > max_output_tokens(small)


def test_unbounded_schema_is_refused():
    with pytest.raises(UnboundedSchemaError, match="maxItems"):
        max_output_tokens(Unbounded.model_json_schema())
    with pytest.raises(SchemaError, match="not bounded"):
        resolve_schema("tests.test_schemas:Unbounded")


def test_validation_uses_the_pydantic_model():
    spec = builtin_schema("repo")
    good = {
        "name": "x",
        "purpose": "p",
        "languages": ["py"],
        "components": [],
        "entry_points": [],
        "dependencies": [],
        "risks": [],
    }
    assert spec.validate(json.dumps(good))["purpose"] == "p"
    with pytest.raises(ValueError):
        spec.validate(json.dumps({**good, "languages": ["a"] * 50}))


def test_user_schema_as_module_class():
    spec = resolve_schema("schemas.paper:Paper")
    assert spec.json_schema == builtin_schema("paper").json_schema


def test_user_schema_as_json_file(tmp_path):
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps({
        "title": "invoice", "description": "An invoice.", "type": "object",
        "properties": {"total": {"type": "number"}, "vendor": {"type": "string", "maxLength": 100}},
        "required": ["total", "vendor"],
    }))  # fmt: skip
    spec = resolve_schema(str(path))
    assert spec.name == "invoice" and spec.max_output_tokens > 0
    assert spec.validate('{"total": 3.5, "vendor": "ACME"}') == {"total": 3.5, "vendor": "ACME"}
    with pytest.raises(ValueError):
        spec.validate('{"total": "three"}')


@pytest.mark.parametrize("name, message", [
    ("nope", "unknown schema 'nope'"),
    ("no.such.module:X", "cannot load schema"),
    ("json:dumps", "not a pydantic model"),
    ("/missing/file.json", "cannot read schema file"),
])  # fmt: skip
def test_bad_schema_names(name, message):
    with pytest.raises(SchemaError, match=message):
        resolve_schema(name)
