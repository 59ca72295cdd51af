"""The job spec: validation, overrides, engine choice, and the README's reference
kept true. Pure: no Ray, no model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.ingest import IngestLimits
from pipelines.job import (
    EngineSpec,
    JobError,
    JobSpec,
    choose_engine,
    parse_setting,
    read_job_file,
    schema_runs,
    validate_job,
)
from pipelines.records import SourceRef

ROOT = Path(__file__).parent.parent


def test_defaults_and_a_full_spec():
    job = validate_job({"sources": ["in/"], "output": "out/"})
    assert job.schemas == ["auto"] and job.engine.name == "auto" and job.engine.concurrency == 1
    assert job.limits == IngestLimits() and job.run.retry_failed is False and job.run.label is None
    full = validate_job(read_job_file(ROOT / "infra" / "jobs" / "example.yaml"))
    assert full.sources == ["s3://example-docs/incoming/reports/"] and full.limits.max_pdf_pages == 5000


def test_auto_reads_repositories_with_repo_and_the_rest_with_paper():
    pdf, note, checkout, archive = (SourceRef(f"/in/{n}", "/in", n, k) for n, k in
                                    (("a.pdf", "pdf"), ("b.md", "text"), ("c", "repo"), ("d.zip", "archive")))  # fmt: skip
    runs = schema_runs(["auto"], [pdf, note, checkout, archive])
    assert [(s.name, refs) for s, refs in runs] == [("paper", [pdf, note]), ("repo", [checkout, archive])]
    assert [s.name for s, _ in schema_runs(["auto"], [checkout])] == ["repo"]
    assert [(s.name, refs) for s, refs in schema_runs(["auto"], [])] == [("paper", [])]  # says: nothing to extract
    assert [(s.name, refs) for s, refs in schema_runs(["contract"], [pdf, checkout])] == [("contract", [pdf, checkout])]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"output": "o"}, "job: sources: Field required"),
        ({"sources": "in/", "output": "o"}, "job: sources: Input should be a valid list"),
        ({"sources": ["a"], "output": "o", "run": {"label": "Nightly run"}}, "job: run.label: String should match pattern"),
        ({"sources": ["a"], "output": "o", "engine": {"concurrency": 0}}, "job: engine.concurrency: Input should be greater"),
        ({"sources": ["a"], "output": "o", "limits": {"max_pages": 1}}, "job: limits.max_pages: Unexpected keyword argument"),
        ({"sources": ["a"], "output": "o", "extra": 1, "more": 2}, "job: extra: Extra inputs are not permitted (and 1 more)"),
    ],
)
def test_errors_are_one_line_naming_the_key(data, message):
    with pytest.raises(JobError) as e:
        validate_job(data)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_overrides_win_over_the_file(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("sources: [a]\noutput: o\nengine: {name: llamacpp}\n")
    data = read_job_file(f, {"engine.concurrency": 3, "sources": ["b", "c"], "limits.max_pdf_pages": 10})
    job = validate_job(data)
    assert job.sources == ["b", "c"] and job.engine.name == "llamacpp" and job.engine.concurrency == 3
    assert job.limits.max_pdf_pages == 10
    f.write_text("- a\n- b\n")
    with pytest.raises(JobError, match="expected a mapping"):
        read_job_file(f)
    f.write_text("sources: [a]\noutput: o\nengine: fast\n")
    with pytest.raises(JobError, match="'engine' must be a mapping"):
        read_job_file(f, {"engine.name": "llamacpp"})


def test_parse_setting_reads_yaml_values():
    assert parse_setting("engine.max_model_len=4096", "--set") == ("engine.max_model_len", 4096)
    assert parse_setting("run.retry_failed=true", "--set") == ("run.retry_failed", True)
    assert parse_setting("s3.endpoint_url=http://h:9000", "--set") == ("s3.endpoint_url", "http://h:9000")
    assert parse_setting("x=", "--set") == ("x", None)
    with pytest.raises(JobError, match="--set expects key=value"):
        parse_setting("engine.name", "--set")
    with pytest.raises(JobError, match="not a YAML value"):
        parse_setting("a=[1", "--engine-option")


def test_auto_engine_choice():
    assert choose_engine(EngineSpec())[0] == "llamacpp"
    assert choose_engine(EngineSpec(options={"base_url": "http://h/v1"})) == ("openai", "auto: a server URL was given")
    assert choose_engine(EngineSpec(name="llamacpp", options={"base_url": "x"}))[0] == "llamacpp"


def _keys(model: type, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            keys += _keys(sub, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("### The job spec", 1)[1].split("\n### ", 1)[0]
    for key in _keys(JobSpec):
        if key != "limits":
            assert f"`{key}`" in reference, key
    limits = readme.split("## Limits", 1)[1].split("\n## ", 1)[0]
    for f in dataclasses.fields(IngestLimits):
        assert f"`{f.name}`" in limits, f.name


@pytest.mark.parametrize("key", ["model", "max_model_len"])
def test_model_and_context_among_the_engine_options_is_one_clear_error(key):
    from pipelines.engines import EngineError
    from pipelines.job import build_engine

    with pytest.raises(EngineError, match=f"engine option '{key}': set it as engine.{key}"):
        build_engine(EngineSpec(name="vllm", options={key: 1}))
