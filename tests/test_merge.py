from pipelines.merge import merge_extractions
from schemas import builtin_schema

PAPER = builtin_schema("paper").json_schema
REPO = builtin_schema("repo").json_schema


def test_single_window_is_unchanged():
    data = {"title": "T", "authors": ["A"], "year": 2024, "summary": "s"}
    assert merge_extractions(PAPER, [(0, data)]).data == data


def test_lists_concatenate_and_deduplicate_scalars_take_first_non_null():
    a = {"title": None, "authors": ["Ann", "Bo"], "year": 2024, "summary": "first", "key_findings": ["x"]}
    b = {"title": "Late title", "authors": ["Bo", "Cy"], "year": 2023, "summary": "second", "key_findings": ["x", "y"]}
    m = merge_extractions(PAPER, [(0, a), (1, b)])
    assert m.data["authors"] == ["Ann", "Bo", "Cy"]
    assert m.data["key_findings"] == ["x", "y"]
    assert m.data["title"] == "Late title"  # first non-null
    assert m.data["year"] == 2024 and m.data["summary"] == "first"
    fields = {c["field"]: c for c in m.conflicts}
    assert set(fields) == {"year", "summary"}
    assert fields["year"]["dropped"] == 2023 and fields["year"]["window"] == 1


def test_lists_of_objects_and_max_items():
    comp = lambda i: {"name": f"c{i}", "path": None, "purpose": "p"}  # noqa: E731
    a = {"components": [comp(i) for i in range(6)], "languages": ["py"]}
    b = {"components": [comp(i) for i in range(3, 10)], "languages": ["py", "go"]}
    m = merge_extractions(REPO, [(0, a), (1, b)])
    assert [c["name"] for c in m.data["components"]] == [f"c{i}" for i in range(8)]  # maxItems 8
    assert m.truncated == ["components"]
    assert m.data["languages"] == ["py", "go"]


def test_merged_result_validates():
    spec = builtin_schema("repo")
    base = {"name": None, "purpose": "p", "languages": [], "components": [], "entry_points": [], "dependencies": [], "risks": []}
    m = merge_extractions(
        spec.json_schema, [(0, {**base, "dependencies": ["ray"]}), (1, {**base, "name": "x", "dependencies": ["ray", "typer"]})]
    )
    import json

    assert spec.validate(json.dumps(m.data))["dependencies"] == ["ray", "typer"]
