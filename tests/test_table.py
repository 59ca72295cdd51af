"""The Parquet table per schema: Arrow types from JSON schemas, rows from results, and the
incremental update on a local folder and on the loopback S3 server, read back with DuckDB."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import S3FileSystem

import pipelines.table as table_mod
from pipelines.s3 import S3Storage, s3_client
from pipelines.storage import LocalStorage, Storage
from pipelines.table import arrow_type, conform, table_schema, update_table
from schemas import SchemaSpec, builtin_schema
from tests.clirun import longctx
from tests.s3server import CREDENTIALS, client_with_bucket


def test_builtin_schemas_become_typed_nested_columns():
    paper = table_schema(builtin_schema("paper"))
    assert paper.field("title").type == pa.string() and paper.field("year").type == pa.int64()
    assert paper.field("authors").type == pa.list_(pa.string())
    repo = table_schema(builtin_schema("repo"))
    component = repo.field("components").type.value_type
    assert pa.types.is_struct(component) and [f.name for f in component] == ["name", "path", "purpose"]
    assert repo.names[:4] == ["result_key", "source", "doc_id", "status"]


def test_unions_enums_and_clashing_names():
    defs: dict = {}
    assert arrow_type({"anyOf": [{"type": "integer"}, {"type": "null"}]}, defs) == pa.int64()
    assert arrow_type({"anyOf": [{"type": "integer"}, {"type": "string"}]}, defs) == pa.string()  # as JSON text
    assert arrow_type({"type": ["number", "null"]}, defs) == pa.float64()
    assert arrow_type({"enum": ["a", "b", None]}, defs) == pa.string()
    assert arrow_type({"enum": [1, 2]}, defs) == pa.int64()
    assert arrow_type({"type": "object"}, defs) == pa.string()  # no properties: JSON text
    spec = SchemaSpec("clash", "", {"type": "object", "properties": {"status": {"type": "string"}}}, validate=json.loads)
    assert table_schema(spec).names[-1] == "data_status"


def test_conform_keeps_what_fits_and_nulls_what_does_not():
    assert conform("x", pa.int64()) is None and conform(True, pa.int64()) is None and conform(3.0, pa.int64()) == 3.0
    assert conform({"a": 1}, pa.string()) == '{"a": 1}' and conform(2, pa.float64()) == 2.0
    struct = pa.struct([("name", pa.string()), ("n", pa.int64())])
    assert conform([{"name": "a", "n": "many"}], pa.list_(struct)) == [{"name": "a", "n": None}]
    assert conform("not a list", pa.list_(pa.string())) is None


def result(n: int, status: str = "ok") -> dict:
    return {
        "source": f"/in/doc{n}.md", "doc_id": f"doc{n}", "schema": "paper", "schema_hash": "h", "model": "m",
        "status": status, "reason": None if status == "ok" else "corrupt PDF", "fingerprint": f"f{n}",
        "data": {"title": f"Title {n}", "authors": [f"A{n}", "B"], "year": 2000 + n, "summary": "s"} if status == "ok" else None,
        "windows": [{"prompt_tokens": 100 + n, "completion_tokens": 10}, {"prompt_tokens": 5, "completion_tokens": 1}],
    }  # fmt: skip


def query(rows_from: str, sql: str) -> list[tuple]:
    return duckdb.sql(sql.replace("TABLE", f"read_parquet('{rows_from}')")).fetchall()


def fill(out: Storage, n: int) -> dict[str, str]:
    for i in range(n):
        out.write_json(f"paper/doc{i}.md.json", result(i, "failed" if i == 3 else "ok"))
    out.write_json("paper/stray.json", ["not a result"])
    return out.versions("paper/")


def test_incremental_update_on_a_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(table_mod, "ROWS_PER_PART", 8)  # 20 results: 4 parts
    out, spec = LocalStorage(tmp_path), builtin_schema("paper")
    first = update_table(out, spec, fill(out, 20))
    assert (first.parts, first.rewritten, first.read, first.rows) == (4, 4, 21, 20)
    parts = str(tmp_path / "paper/_table/*.parquet")
    assert query(parts, "select count(*), count(distinct result_key) from TABLE") == [(20, 20)]  # the stray has no row
    got = query(parts, "select title, authors, year, status, prompt_tokens, windows from TABLE where doc_id = 'doc7'")
    assert got == [("Title 7", ["A7", "B"], 2007, "ok", 112, 2)]
    assert query(parts, "select title, reason from TABLE where status = 'failed'") == [(None, "corrupt PDF")]

    assert update_table(out, spec, out.versions("paper/")).rewritten == 0  # nothing changed: nothing written
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("paper/_table/*")}

    out.write_json("paper/doc5.md.json", result(5) | {"data": result(5)["data"] | {"title": "Changed"}})
    again = update_table(out, spec, out.versions("paper/"))
    assert (again.rewritten, again.read) == (1, 1)  # only the part holding doc5, and only doc5 read
    assert sum(p.stat().st_mtime_ns != t for p, t in stamps.items()) == 1
    assert query(parts, "select title from TABLE where doc_id = 'doc5'") == [("Changed",)]
    assert query(parts, "select count(*) from TABLE") == [(20,)]

    grown = update_table(out, spec, fill(out, 40))  # twice as many parts: every row moves, each once
    assert grown.parts == 8 and query(parts, "select count(*), count(distinct result_key) from TABLE") == [(40, 40)]


def test_update_on_the_loopback_s3_server(s3):
    bucket = "longctx-table"
    client_with_bucket(s3.url, bucket)
    prefix = f"t-{uuid.uuid4().hex[:8]}/"
    out, spec = S3Storage(f"s3://{bucket}/{prefix}", client=s3_client(s3.url)), builtin_schema("paper")
    assert update_table(out, spec, fill(out, 5)).rewritten == 1
    # Read as Ray Data or pandas would: Arrow's own S3 client (DuckDB's needs an extension from the internet).
    fs = S3FileSystem(access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                      endpoint_override=s3.url, region="us-east-1")  # fmt: skip
    parts = ds.dataset(f"{bucket}/{prefix}paper/_table/", filesystem=fs, format="parquet").to_table()  # noqa: F841
    rows = duckdb.sql("select doc_id, title, year from parts order by doc_id")
    assert rows.fetchall() == [(f"doc{i}", None if i == 3 else f"Title {i}", None if i == 3 else 2000 + i) for i in range(5)]
    out.write_json("paper/doc1.md.json", result(1, "failed"))
    assert update_table(out, spec, out.versions("paper/")).read == 1


@pytest.mark.parametrize("name", ["paper", "contract", "repo"])
def test_every_builtin_schema_has_a_table_schema_and_no_results_make_no_table(tmp_path: Path, name: str):
    out = LocalStorage(tmp_path / "out")
    assert update_table(out, builtin_schema(name), {}) is None and not (tmp_path / "out").exists()
    out.write_json(f"{name}/a.json", {"status": "failed", "reason": "corrupt PDF", "data": None})
    done = update_table(out, builtin_schema(name), out.versions(f"{name}/"))
    assert done and (done.rows, done.parts, done.rewritten) == (1, 1, 1)
    parts = str(tmp_path / "out" / name / "_table/*.parquet")
    assert query(parts, "select status, reason from TABLE") == [("failed", "corrupt PDF")]


def test_the_table_command_builds_a_table_for_an_older_output(tmp_path: Path):
    out = LocalStorage(tmp_path / "out")
    fill(out, 3)
    proc = longctx("table", str(tmp_path / "out"), "--schema", "paper")
    assert proc.returncode == 0, proc.stderr
    assert f"{tmp_path / 'out/paper/_table'}: 3 rows in 1 parts (1 rewritten)" in " ".join(proc.stdout.split())
    assert query(str(tmp_path / "out/paper/_table/*.parquet"), "select count(*) from TABLE") == [(3,)]

    for args in (["--schema", "nonsense"], ["--schema", "repo"]):  # not a schema; no results of that schema
        bad = longctx("table", str(tmp_path / "out"), *args)
        assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
    assert "no repo results under" in bad.stderr
    missing = longctx("table", str(tmp_path / "typo"), "--schema", "paper")
    assert missing.returncode == 2 and not (tmp_path / "typo").exists()  # a mistyped path leaves nothing behind


def test_a_changed_schema_rewrites_every_part_and_leaves_none_stale(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(table_mod, "ROWS_PER_PART", 2)
    out = LocalStorage(tmp_path)
    assert update_table(out, builtin_schema("paper"), fill(out, 6)).parts == 4
    narrower = SchemaSpec("paper", "", {"type": "object", "properties": {"title": {"type": "string"}}}, validate=json.loads)
    monkeypatch.setattr(table_mod, "ROWS_PER_PART", 100)  # would need one part now
    done = update_table(out, narrower, out.versions("paper/"))
    assert (done.parts, done.rewritten, done.rows) == (4, 4, 6)
    columns = {tuple(pq.read_schema(p).names) for p in tmp_path.glob("paper/_table/*.parquet")}
    assert columns == {(*table_mod.META_COLUMNS.names, "title")}
