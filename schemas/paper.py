"""Papers and reports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Cited, Items, Text


class Paper(BaseModel):
    """What a paper or report is about, how it was done, and what it found."""

    model_config = ConfigDict(extra="forbid", title="paper")

    title: Text(200) | None = Cited("The document's title as printed")
    authors: Items(Text(60), 20) = Field(description="Author names in printed order")
    year: int | None = Cited("Year of publication, if stated")
    document_type: Text(40) | None = Field(description="e.g. research paper, technical report, thesis")
    summary: Text(600) = Field(description="What the document is about and what it concludes")
    research_questions: Items(Text(200), 3) = Field(description="Questions or goals it addresses")
    methods: Items(Text(200), 5) = Field(description="Methods, data sets and experimental setup")
    key_findings: Items(Text(200), 6) = Cited("Main results, with numbers where given")
    limitations: Items(Text(200), 4) = Field(description="Limitations the document states")
