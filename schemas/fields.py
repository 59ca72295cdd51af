"""Bounded field types: every string and list in a schema has a maximum size,
so a schema-constrained decode always closes within its output budget."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field


def Text(max_chars: int) -> Any:  # noqa: N802 - reads like a type in a model
    return Annotated[str, Field(max_length=max_chars)]


def Items(item: Any, max_items: int) -> Any:  # noqa: N802
    return Annotated[list[item], Field(max_length=max_items)]
