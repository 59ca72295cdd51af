"""Contracts and agreements."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Cited, Items, Text


class Party(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text(120)
    role: Text(60) | None = Field(description="e.g. licensor, customer, employer")


class Obligation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    party: Text(120) = Field(description="Who must do it")
    obligation: Text(200) = Field(description="What they must do")
    clause: Text(20) | None = Field(description="Clause or section number, if any")


class Contract(BaseModel):
    """Who agreed to what, for how long, and under which law."""

    model_config = ConfigDict(extra="forbid", title="contract")

    title: Text(200) | None
    contract_type: Text(60) | None = Field(description="e.g. NDA, license, employment, services")
    parties: Items(Party, 6) = Cited()
    effective_date: Text(40) | None = Cited("As written, or ISO 8601 if unambiguous")
    term: Text(200) | None = Cited("Duration and renewal")
    governing_law: Text(80) | None = Cited()
    payment_terms: Text(300) | None
    obligations: Items(Obligation, 8)
    termination: Text(300) | None = Field(description="How and when it can be terminated")
    liability_cap: Text(200) | None = Cited()
    risks: Items(Text(200), 5) = Field(description="Unusual or one-sided terms a reviewer should see")
