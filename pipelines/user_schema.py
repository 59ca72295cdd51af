"""Resolve a schema named on the command line: a built-in name, ``module:Class``
(a pydantic model) or a JSON Schema file."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import jsonschema
from pydantic import BaseModel

from schemas import BUILTIN, SchemaSpec, UnboundedSchemaError, builtin_schema


class SchemaError(ValueError):
    """The schema cannot be found or loaded, or is not bounded."""


def resolve_schema(name: str) -> SchemaSpec:
    if name in BUILTIN:
        spec = builtin_schema(name)
    elif name.endswith(".json"):
        spec = _from_file(Path(name))
    elif ":" in name:
        spec = _from_model(name)
    else:
        raise SchemaError(f"unknown schema '{name}' (built in: {', '.join(BUILTIN)}; or module:Class, or a .json file)")
    try:
        spec.max_output_tokens  # noqa: B018 - every list and string must be bounded
    except UnboundedSchemaError as e:
        raise SchemaError(f"schema '{name}' is not bounded: {e}") from None
    return spec


def _from_model(ref: str) -> SchemaSpec:
    module_name, _, attr = ref.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SchemaError(f"cannot load schema '{ref}': {e}") from None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SchemaError(f"'{ref}' is not a pydantic model class")
    return SchemaSpec.from_model(model, name=attr.lower())


def _from_file(path: Path) -> SchemaSpec:
    try:
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
    except OSError as e:
        raise SchemaError(f"cannot read schema file {path}: {e.strerror}") from None
    except (ValueError, jsonschema.SchemaError) as e:
        raise SchemaError(f"{path} is not a valid JSON Schema: {str(e).splitlines()[0]}") from None
    validator = jsonschema.Draft202012Validator(schema)

    def validate(text: str) -> dict:
        data = json.loads(text)
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is not None:  # one error type for every schema: ValueError, as pydantic's
            raise ValueError(f"{error.json_path}: {error.message}")
        return data

    return SchemaSpec(
        name=schema.get("title") or path.stem,
        description=schema.get("description", ""),
        json_schema=schema,
        validate=validate,
    )
