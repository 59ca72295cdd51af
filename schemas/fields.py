"""Bounded field types: every string and list in a schema has a maximum size,
so a schema-constrained decode always closes within its output budget."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from schemas.evidence import EVIDENCE


def Text(max_chars: int) -> Any:  # noqa: N802 - reads like a type in a model
    return Annotated[str, Field(max_length=max_chars)]


def Items(item: Any, max_items: int) -> Any:  # noqa: N802
    return Annotated[list[item], Field(max_length=max_items)]


def Cited(description: str | None = None) -> Any:  # noqa: N802 - a Field, as pydantic's
    """A field whose every value the model backs with a verbatim quote and its place
    (``schemas/evidence.py``); the pipeline checks each quote against the source."""
    return Field(description=description, json_schema_extra={EVIDENCE: True})
