"""Results scored against gold JSON, field by field: what ``longctx eval`` prints.

A gold file holds the fields its author knows, for one document; fields it
leaves out are not scored. Per field, a score in [0, 1]:

- ``null`` in the gold: the document does not state it; 1 when the result
  says so too (null or empty), 0 when it made a value up;
- numbers and booleans: equal;
- short strings (names, labels, paths: a schema ``maxLength`` under 200):
  equal after case and whitespace are normalised;
- long strings (titles, summaries, findings): token-overlap F1;
- lists: F1 of precision and recall, an item matching a gold item when it
  scores at least ``MATCH`` by these same rules (objects: the mean over the
  gold item's fields).

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

TEXT_MIN_LENGTH = 200  # a string field allowed this many characters is free text
MATCH = 0.5  # an item scoring this much against a gold item is that item
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class FieldScore:
    field: str
    score: float
    precision: float | None = None  # lists only
    recall: float | None = None


def normal(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .,;:'\"")


def overlap(got: str, gold: str) -> float:
    """Token-overlap F1 (SQuAD's), on lower-cased word tokens."""
    a, b = _WORD.findall(got.casefold()), _WORD.findall(gold.casefold())
    if not a or not b:
        return float(a == b)
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of ``anyOf: [X, null]``."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") != "null":
            return branch
    return schema


def score_value(got: Any, gold: Any, schema: dict[str, Any] | None = None) -> float:
    schema = _nullable(schema or {})
    if gold is None:
        return float(_empty(got))
    if got is None:
        return 0.0
    if isinstance(gold, int | float):  # bool too
        return float(got == gold)
    if isinstance(gold, str):
        if not isinstance(got, str):
            return 0.0
        if schema.get("maxLength", 0) >= TEXT_MIN_LENGTH:
            return overlap(got, gold)
        return float(normal(got) == normal(gold))
    if isinstance(gold, dict):
        if not isinstance(got, dict) or not gold:
            return float(got == gold)
        props = schema.get("properties", {})
        return sum(score_value(got.get(k), v, props.get(k)) for k, v in gold.items()) / len(gold)
    if isinstance(gold, list):
        return score_list(got, gold, schema)[0]
    return float(got == gold)


def score_list(got: Any, gold: list, schema: dict[str, Any] | None = None) -> tuple[float, float, float]:
    """(F1, precision, recall): each result item matched to at most one gold item, best first."""
    got = got if isinstance(got, list) else []
    if not got and not gold:
        return 1.0, 1.0, 1.0
    item_schema = _nullable(schema or {}).get("items", {})
    pairs = sorted(((score_value(g, t, item_schema), i, j) for i, g in enumerate(got) for j, t in enumerate(gold)), reverse=True)
    used_got, used_gold = set(), set()
    for s, i, j in pairs:
        if s >= MATCH and i not in used_got and j not in used_gold:
            used_got.add(i)
            used_gold.add(j)
    p = len(used_got) / len(got) if got else 0.0
    r = len(used_gold) / len(gold) if gold else 0.0
    return (2 * p * r / (p + r) if p + r else 0.0), p, r


def score_document(
    data: dict[str, Any] | None, gold: dict[str, Any], json_schema: dict[str, Any] | None = None
) -> list[FieldScore]:
    """One score per field of the gold. ``data`` None (a failed or missing result) scores 0 throughout."""
    props = (json_schema or {}).get("properties", {})
    scores = []
    for field, want in gold.items():
        if data is None:
            scores.append(FieldScore(field, 0.0, *((0.0, 0.0) if isinstance(want, list) else ())))
        elif isinstance(want, list):
            f1, p, r = score_list(data.get(field), want, props.get(field))
            scores.append(FieldScore(field, f1, p, r))
        else:
            scores.append(FieldScore(field, score_value(data.get(field), want, props.get(field))))
    return scores


def field_means(documents: list[list[FieldScore]]) -> dict[str, float]:
    """Each field's mean score over the documents whose gold has it, in first-seen order."""
    by_field: dict[str, list[float]] = {}
    for scores in documents:
        for s in scores:
            by_field.setdefault(s.field, []).append(s.score)
    return {f: sum(v) / len(v) for f, v in by_field.items()}
