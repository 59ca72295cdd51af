"""Code repositories."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Cited, Items, Text


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text(80)
    path: Text(120) | None = Field(description="Main file or directory")
    purpose: Text(200)


class EntryPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Text(20) = Field(description="e.g. cli, http, library, job, test")
    name: Text(120) = Field(description="Command, route, function or module")
    path: Text(120) | None


class Repo(BaseModel):
    """What a repository is and does, its parts, how it is run, and its risks."""

    model_config = ConfigDict(extra="forbid", title="repo")

    name: Text(80) | None = Cited()
    purpose: Text(600) = Field(description="What the code does and for whom")
    languages: Items(Text(30), 6)
    components: Items(Component, 8)
    entry_points: Items(EntryPoint, 6) = Cited()
    dependencies: Items(Text(60), 15) = Field(description="Main external libraries and services")
    risks: Items(Text(200), 5) = Field(description="Security, correctness or maintenance concerns")
