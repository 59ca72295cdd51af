"""Evidence in a schema: a top-level field marked ``"x-evidence": true`` asks, for each of its
values, a short verbatim quote from the source and where it is.

The model is constrained by ``with_evidence(schema)``, in which each such value is wrapped as
``{"value": ..., "quote": ..., "where": ...}`` (a list's items one by one; a null stays null:
"not stated" needs no quote). ``split_evidence`` takes the wrapped data apart again into the
data the user's schema validates and the quotes, which the pipeline then looks up in the
source (``pipelines/evidence.py``). Quote and place are bounded, so the output budget derived
from the wrapped schema (``schemas/bounds.py``) stays finite. No I/O.
"""

from __future__ import annotations

import copy
from typing import Any

EVIDENCE = "x-evidence"
QUOTE_CHARS = 160  # a sentence: enough to find the value, short enough to copy verbatim
WHERE_CHARS = 60  # "page 3", "src/server.py:10-14"

_QUOTE = {"type": "string", "maxLength": QUOTE_CHARS, "description": "verbatim from the document, as printed"}
_WHERE = {"type": "string", "maxLength": WHERE_CHARS, "description": "the page, or the file path and lines"}


def evidence_fields(schema: dict[str, Any]) -> list[str]:
    """The top-level fields whose values need evidence, in the schema's order."""
    return [k for k, v in schema.get("properties", {}).items() if isinstance(v, dict) and v.get(EVIDENCE)]


def with_evidence(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema the model decodes against: each marked field's values wrapped with a quote
    and its place, the marks themselves left out (a decoder need not know our keyword). A
    schema without marked fields is returned as it is."""
    fields = evidence_fields(schema)
    if not fields:
        return schema
    wrapped = copy.deepcopy(schema)
    for name in fields:
        node = wrapped["properties"][name]
        del node[EVIDENCE]
        keep = {k: node.pop(k) for k in ("description",) if k in node}
        wrapped["properties"][name] = _wrap(node) | keep
    return wrapped


def _wrap(node: dict[str, Any]) -> dict[str, Any]:
    for key in ("anyOf", "oneOf"):
        if key in node:  # nullable: the non-null branches wrapped, null left alone
            return {**node, key: [n if n.get("type") == "null" else _wrap(n) for n in node[key]]}
    if node.get("type") == "array":
        return {**node, "items": _wrap(node.get("items", {}))}
    return {
        "type": "object",
        "properties": {"value": node, "quote": _QUOTE, "where": _WHERE},
        "required": ["value", "quote", "where"],
        "additionalProperties": False,
    }


def split_evidence(data: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wrapped data (decoded against ``with_evidence(schema)``) → (the data ``schema`` describes,
    one record per quoted value: ``{"field", "index" (in a list, else None), "value", "quote",
    "where"}``)."""
    data = dict(data)
    quotes: list[dict[str, Any]] = []
    for name in evidence_fields(schema):
        if name in data:
            data[name] = _unwrap(data[name], name, None, quotes)
    return data, quotes


def _unwrap(value: Any, field: str, index: int | None, quotes: list[dict[str, Any]]) -> Any:
    if isinstance(value, list):
        return [_unwrap(v, field, i, quotes) for i, v in enumerate(value)]
    if isinstance(value, dict) and set(value) == {"value", "quote", "where"}:
        quotes.append({"field": field, "index": index, "value": value["value"], "quote": value["quote"], "where": value["where"]})
        return value["value"]
    return value  # null, or not wrapped: nothing to check
