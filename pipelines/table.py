"""One Parquet table per schema, ``<schema>/_table/``, for DuckDB, pandas, Spark and Ray Data:
one row per stored result, its source, status, fingerprint, model and token counts, then the
schema's top-level fields as columns, lists and objects as nested Arrow types.

The JSON results stay the truth; the table is derived from them. Each result key belongs to
one part file by a hash of the key, so a run rewrites only the parts holding results whose
stored version changed. A part keeps each row's version in its Parquet metadata, so its
unchanged rows are reused and only the changed results are read. What each part was built
from (a digest of its keys and versions) is kept in ``_runs/_index/<schema>.table.json``:
with nothing changed, updating the table reads that one file.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage import Storage
from schemas import SchemaSpec

TABLE_FORMAT = 1
ROWS_PER_PART = 4096  # parts double in number (and are all rebuilt) when they outgrow this
READERS = 16  # concurrent reads of changed results
VERSIONS = b"longctx.versions"  # a part's metadata: {result key: stored version} of its rows

# Columns every table has, before the schema's own fields.
META_COLUMNS = pa.schema(
    [
        ("result_key", pa.string()),
        ("source", pa.string()),
        ("doc_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("fingerprint", pa.string()),
        ("model", pa.string()),
        ("schema_hash", pa.string()),
        ("windows", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("evidence_verified", pa.int64()),  # values whose quote was found in the source (null: none asked)
        ("evidence_unverified", pa.int64()),  # values whose quote was not found, or that had none
    ]
)


def table_folder(schema: str) -> str:
    return f"{schema}/_table/"


def state_key(schema: str) -> str:
    return f"_runs/_index/{schema}.table.json"


def arrow_type(node: dict[str, Any], defs: dict[str, Any]) -> pa.DataType:
    """A JSON schema node's Arrow type. A value that can take several types (a union other
    than with null) becomes a string column holding its JSON text."""
    if "$ref" in node:
        return arrow_type(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in node:
            kinds = {str(t): t for t in (arrow_type(n, defs) for n in node[key]) if t != pa.null()}
            return next(iter(kinds.values())) if len(kinds) == 1 else pa.string()
    values = node.get("enum", [node["const"]] if "const" in node else None)
    if values is not None:
        return arrow_type({"type": sorted({_json_type(v) for v in values})}, defs)
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return arrow_type({**node, "type": kinds[0]}, defs) if len(kinds) == 1 else pa.string()
    if kind == "object" and node.get("properties"):
        return pa.struct([(k, arrow_type(v, defs)) for k, v in node["properties"].items()])
    if kind == "array" and isinstance(node.get("items"), dict):
        return pa.list_(arrow_type(node["items"], defs))
    return {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(), "null": pa.null()}.get(kind, pa.string())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string"}.get(type(value), "object")


def table_schema(spec: SchemaSpec) -> pa.Schema:
    """The metadata columns, then one column per top-level field of the schema; a field named
    like a metadata column becomes ``data_<name>``."""
    defs = spec.json_schema.get("$defs", {})
    fields = list(META_COLUMNS)
    for name, node in spec.json_schema.get("properties", {}).items():
        column = f"data_{name}" if name in META_COLUMNS.names else name
        fields.append(pa.field(column, arrow_type(node, defs)))
    return pa.schema(fields)


def conform(value: Any, kind: pa.DataType) -> Any:
    """``value`` as the column's type wants it: None where it does not fit (a result of an
    older schema), JSON text in a string column for a value that is not a string."""
    if value is None:
        return None
    if pa.types.is_struct(kind):
        return {f.name: conform(value.get(f.name), f.type) for f in kind} if isinstance(value, dict) else None
    if pa.types.is_list(kind):
        return [conform(v, kind.value_type) for v in value] if isinstance(value, list) else None
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if pa.types.is_boolean(kind):
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if pa.types.is_integer(kind):
        return value if isinstance(value, int) or value.is_integer() else None
    return float(value)


def table_row(key: str, result: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """A stored result → its row (a column the result lacks is null)."""
    windows = result.get("windows") or []
    evidence = result.get("evidence") if isinstance(result.get("evidence"), dict) else {}
    row = {
        "result_key": key,
        **{k: result.get(k) for k in ("source", "doc_id", "status", "reason", "fingerprint", "model", "schema_hash")},
        "windows": len(windows),
        "prompt_tokens": sum(w.get("prompt_tokens") or 0 for w in windows),
        "completion_tokens": sum(w.get("completion_tokens") or 0 for w in windows),
        "evidence_verified": evidence.get("verified"),
        "evidence_unverified": None if not evidence else evidence.get("unverified", 0) + evidence.get("missing", 0),
    }
    data = result.get("data") if isinstance(result.get("data"), dict) else {}
    fields = schema.names[len(META_COLUMNS) :]
    for column, name in zip(fields, _field_names(fields), strict=True):
        row[column] = data.get(name)
    return {f.name: conform(row[f.name], f.type) for f in schema}


def _field_names(columns: list[str]) -> list[str]:
    """The schema fields behind the data columns (``data_status`` holds the field ``status``)."""
    return [c.removeprefix("data_") if c.removeprefix("data_") in META_COLUMNS.names else c for c in columns]


def part_of(key: str, parts: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % parts


def part_key(schema: str, part: int) -> str:
    return f"{table_folder(schema)}part-{part:05d}.parquet"


@dataclass(frozen=True)
class TableUpdate:
    folder: str  # the table's location
    rows: int  # documents in the table
    parts: int
    rewritten: int  # parts written by this update
    read: int  # results read to write them


def update_table(out: Storage, spec: SchemaSpec, listed: dict[str, str]) -> TableUpdate | None:
    """Bring ``<schema>/_table/`` up to the results ``listed`` (result key → version, one
    listing of ``<schema>/``): rewrite the parts whose keys or versions changed, reading only
    the results whose rows they do not already hold. None, writing nothing, when there are
    neither results nor a table."""
    schema = table_schema(spec)
    schema_id = hashlib.sha256(schema.to_string().encode()).hexdigest()[:16]
    state = out.read_json(state_key(spec.name))
    before = state.get("parts", []) if isinstance(state, dict) and state.get("format") == TABLE_FORMAT else []
    if not listed and not before:
        return None
    # Never fewer parts than before: every old part file is rewritten, none left holding stale rows.
    parts = max(len(before), _parts_for(len(listed)))
    if parts != len(before) or state.get("schema_id") != schema_id:  # more parts, or other columns: all rewritten
        before = []
    by_part: list[dict[str, str]] = [{} for _ in range(parts)]
    for key, version in listed.items():
        by_part[part_of(key, parts)][key] = version
    now = [{"digest": _digest(p), "rows": None} for p in by_part]
    stale = [i for i in range(parts) if i >= len(before) or before[i].get("digest") != now[i]["digest"]]
    read = 0
    for i in range(parts):
        if i in stale:
            now[i]["rows"], n = _write_part(out, spec.name, i, by_part[i], schema, reuse=bool(before))
            read += n
        else:
            now[i]["rows"] = before[i].get("rows")
    if stale:
        out.write_json(state_key(spec.name), {"format": TABLE_FORMAT, "schema_id": schema_id, "parts": now})
    rows = sum(p["rows"] or 0 for p in now)
    return TableUpdate(out.uri(table_folder(spec.name)), rows, parts, len(stale), read)


def _parts_for(rows: int) -> int:
    parts = 1
    while parts * ROWS_PER_PART < rows:
        parts *= 2
    return parts


def _digest(versions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()[:32]


def _write_part(out: Storage, name: str, part: int, versions: dict[str, str], schema: pa.Schema, reuse: bool) -> tuple[int, int]:
    """One part file: its rows whose version is unchanged from the old part, the rest read from
    the results. Returns its rows, and how many results were read."""
    rows: dict[str, dict[str, Any]] = {}
    current: set[str] = set()  # keys whose version the old part was built from: rows, and objects that are no result
    old = out.read_bytes(part_key(name, part)) if reuse else None
    if old is not None:
        table = pq.read_table(io.BytesIO(old))
        held = json.loads((table.schema.metadata or {}).get(VERSIONS, b"{}"))
        current = {k for k, v in held.items() if versions.get(k) == v}
        rows = {r["result_key"]: r for r in table.to_pylist() if r["result_key"] in current}
    missing = [k for k in versions if k not in current]
    for key, result in zip(missing, _read_all(out.read_json, missing), strict=True):
        if isinstance(result, dict) and "status" in result:  # an object that is no result has no row
            rows[key] = table_row(key, result, schema)
    meta = {VERSIONS: json.dumps(versions, sort_keys=True).encode()}
    table = pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=schema.with_metadata(meta))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    out.write_bytes(part_key(name, part), buf.getvalue())
    return len(rows), len(missing)


def _read_all(read: Callable[[str], Any], keys: list[str]) -> list[Any]:
    if not keys:
        return []
    with ThreadPoolExecutor(min(READERS, len(keys))) as pool:
        return list(pool.map(read, keys))
