"""Merge the extractions of one document's windows by schema-aware rules.

DESIGN decision 7: lists are concatenated and de-duplicated; a scalar takes
the first non-null value, and a different later value is recorded as a
conflict; objects merge field by field. A merged list longer than the
schema's maxItems keeps the first items and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Merged:
    data: dict[str, Any]
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # {"field", "kept", "dropped", "window"}
    truncated: list[str] = field(default_factory=list)  # list fields cut to maxItems


def merge_extractions(schema: dict[str, Any], parts: list[tuple[int, dict[str, Any]]]) -> Merged:
    """``parts``: (window index, validated data) in window order; at least one."""
    if not parts:
        raise ValueError("nothing to merge")
    merged = Merged(data={})
    defs = schema.get("$defs", {})
    merged.data = _merge_object(schema, defs, parts, "", merged)
    return merged


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf"):  # `X | None`: merge as X
        if key in node:
            options = [_resolve(n, defs) for n in node[key] if n.get("type") != "null"]
            if len(options) == 1:
                return options[0]
    return node


def _merge_object(node, defs, parts, path, merged: Merged) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for _, d in parts for k in d))
    props = node.get("properties", {})
    for key in [*props, *(k for k in keys if k not in props)]:
        present = [(w, d[key]) for w, d in parts if isinstance(d, dict) and key in d]
        if not present:
            continue
        out[key] = _merge_value(_resolve(props.get(key, {}), defs), defs, present, f"{path}.{key}".lstrip("."), merged)
    return out


def _merge_value(node, defs, values: list[tuple[int, Any]], path: str, merged: Merged) -> Any:
    kind = node.get("type")
    non_null = [(w, v) for w, v in values if v is not None]
    if kind == "array" or (kind is None and non_null and all(isinstance(v, list) for _, v in non_null)):
        items, seen = [], set()
        for _, v in non_null:
            for item in v:
                key = json.dumps(item, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    items.append(item)
        limit = node.get("maxItems")
        if limit is not None and len(items) > limit:
            items = items[:limit]
            merged.truncated.append(path)
        return items
    if kind == "object" and non_null and all(isinstance(v, dict) for _, v in non_null):
        return _merge_object(node, defs, non_null, path, merged)
    if not non_null:
        return None
    first_window, first = non_null[0]
    for w, v in non_null[1:]:
        if v != first:
            merged.conflicts.append({"field": path, "kept": first, "kept_window": first_window, "dropped": v, "window": w})
    return first
