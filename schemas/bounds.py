"""Derive an output-token budget from a JSON schema's bounds.

Every string and list in our schemas is bounded, so the longest JSON a
constrained decoder can emit is finite; we compute it in characters and turn
it into tokens. No I/O, no tokenizer: this layer stands alone.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Measured on English prose and JSON with Llama 3's tokenizer: about 4 chars per
# token; 3 leaves room for names, numbers and punctuation. A decode that still
# runs out is retried once with a larger budget (DESIGN decision 6).
CHARS_PER_TOKEN = 3
NUMBER_CHARS = 24  # the longest integer or float we expect to print
# A little slack for the closing braces and the end-of-turn token.
OUTPUT_SLACK_TOKENS = 16


class UnboundedSchemaError(ValueError):
    """A string or list without maxLength / maxItems: its output cannot be bounded."""


def max_json_chars(schema: dict[str, Any]) -> int:
    """The longest compact JSON text (no free whitespace) the schema admits."""
    defs = schema.get("$defs", {})
    return _max_chars(schema, defs, path="$")


def max_output_tokens(schema: dict[str, Any]) -> int:
    return math.ceil(max_json_chars(schema) / CHARS_PER_TOKEN) + OUTPUT_SLACK_TOKENS


def _max_chars(node: dict[str, Any], defs: dict[str, Any], path: str) -> int:
    if "$ref" in node:
        return _max_chars(defs[node["$ref"].rsplit("/", 1)[-1]], defs, path)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return max(_max_chars(n, defs, path) for n in node[key])
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"])
    if "const" in node:
        return len(json.dumps(node["const"]))
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        # {"k":v,...}: braces, quotes, colon and comma per property
        return 2 + sum(len(k) + 4 + _max_chars(v, defs, f"{path}.{k}") for k, v in props.items())
    if kind == "array":
        if "maxItems" not in node:
            raise UnboundedSchemaError(f"{path}: list without maxItems")
        item = _max_chars(node.get("items", {}), defs, f"{path}[]")
        return 2 + node["maxItems"] * (item + 1)
    if kind == "string":
        if "maxLength" not in node:
            raise UnboundedSchemaError(f"{path}: string without maxLength")
        # quotes, plus room for escapes of quotes and backslashes in the text
        return 2 + math.ceil(node["maxLength"] * 1.1)
    if kind in ("integer", "number"):
        return NUMBER_CHARS
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    raise UnboundedSchemaError(f"{path}: unsupported schema node {sorted(node)}")
