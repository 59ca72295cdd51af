"""The built-in schemas and the spec every stage uses to talk about a schema."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from schemas.bounds import max_output_tokens
from schemas.contract import Contract
from schemas.evidence import split_evidence, with_evidence
from schemas.paper import Paper
from schemas.repo import Repo


@dataclass(frozen=True)
class SchemaSpec:
    """A named JSON schema with its validator and derived output budget.

    ``validate`` takes JSON text of the schema's data and returns the validated data, or
    raises ValueError (pydantic's ValidationError is one). The model decodes against
    ``decode_schema``, which asks evidence for the fields marked for it (``schemas/evidence.py``);
    ``parse`` takes its output apart and validates the data.
    """

    name: str
    description: str
    json_schema: dict[str, Any]
    validate: Callable[[str], dict[str, Any]] = field(repr=False, compare=False)

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.json_schema, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @cached_property
    def decode_schema(self) -> dict[str, Any]:
        return with_evidence(self.json_schema)

    @property
    def asks_evidence(self) -> bool:
        return self.decode_schema is not self.json_schema

    @property
    def max_output_tokens(self) -> int:
        return max_output_tokens(self.decode_schema)

    def parse(self, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The model's JSON text (of ``decode_schema``) → (the validated data, the quotes given
        as evidence). ValueError when it is not JSON or does not validate."""
        if not self.asks_evidence:
            return self.validate(text), []
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        plain, quotes = split_evidence(data, self.json_schema)
        return self.validate(json.dumps(plain)), quotes

    @classmethod
    def from_model(cls, model: type[BaseModel], name: str | None = None) -> SchemaSpec:
        def validate(text: str) -> dict[str, Any]:
            return model.model_validate_json(text).model_dump(mode="json")

        schema = _drop_field_titles(model.model_json_schema())
        return cls(
            name=name or schema.get("title", model.__name__).lower(),
            description=(model.__doc__ or "").strip(),
            json_schema=schema,
            validate=validate,
        )


def _drop_field_titles(node: Any, top: bool = True) -> Any:
    """pydantic titles every field after its name; in a prompt that is noise."""
    if isinstance(node, dict):
        return {k: _drop_field_titles(v, False) for k, v in node.items() if top or k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_drop_field_titles(v, False) for v in node]
    return node


BUILTIN: dict[str, type[BaseModel]] = {"paper": Paper, "contract": Contract, "repo": Repo}


def builtin_schema(name: str) -> SchemaSpec:
    return SchemaSpec.from_model(BUILTIN[name], name)
