"""Extraction schemas: bounded pydantic models and their registry. No I/O."""

from schemas.bounds import UnboundedSchemaError, max_json_chars, max_output_tokens
from schemas.registry import BUILTIN, SchemaSpec, builtin_schema

__all__ = [
    "BUILTIN",
    "SchemaSpec",
    "UnboundedSchemaError",
    "builtin_schema",
    "max_json_chars",
    "max_output_tokens",
]
