"""What a rerun needs to know of the stored results, without reading each one.

Each finished run writes, per schema, ``_runs/_index/<schema>.json``: for every
result key, its fingerprint and status, and the stored object's version at the
time (S3: its ETag; local: inode, size and modification time). A local file
source's entry also keeps the source's size and modification time with its
content key, so an unchanged file is not hashed again.

The next run reads the index and lists the schema's results once. An entry
whose version is the listing's is current; a result the listing shows with
another version (written after the index, e.g. by a run that was killed) or
with no entry is read, concurrently. So a rerun of N unchanged documents costs
one GET of the index and N/1000 listing pages, not N GETs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipelines.records import SourceRef
from pipelines.storage import Storage

INDEX_FORMAT = 1
READERS = 16  # concurrent reads of the results the index does not cover


def index_key(schema: str) -> str:
    return f"_runs/_index/{schema}.json"


def read_index(out: Storage, schema: str) -> dict[str, dict[str, Any]]:
    """The schema's index entries by result key; empty when there is none (or of another format)."""
    data = out.read_json(index_key(schema))
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def stored_results(
    out: Storage, keys: Sequence[str], index: dict[str, dict[str, Any]], listed: dict[str, str]
) -> dict[str, dict[str, Any] | None]:
    """Each key's stored ``{"fingerprint", "status"}``, or None where there is no result.
    ``listed``: the store's versions under the schema, from one listing."""
    stale = [k for k in keys if k in listed and (index.get(k) or {}).get("version") != listed[k]]
    with ThreadPoolExecutor(READERS) as pool:
        read = dict(zip(stale, pool.map(out.read_json, stale), strict=True))
    found: dict[str, dict[str, Any] | None] = {}
    for k in keys:
        if k not in listed:
            found[k] = None
        elif k in read:
            r = read[k]  # not JSON, or not a result: redone
            found[k] = {"fingerprint": r.get("fingerprint"), "status": r.get("status")} if isinstance(r, dict) else None
        else:
            found[k] = {"fingerprint": index[k].get("fingerprint"), "status": index[k].get("status")}
    return found


def file_stat(ref: SourceRef) -> str | None:
    """A local file source's size and modification time; None for S3 sources and directories."""
    if ref.version is not None:
        return None
    try:
        st = os.stat(ref.uri)
    except OSError:
        return None
    return None if os.path.isdir(ref.uri) else f"{st.st_size}:{st.st_mtime_ns}"


def source_keys(
    refs: Sequence[SourceRef], keys: Sequence[str], index: dict[str, dict[str, Any]], compute: Callable[[SourceRef], str | None]
) -> list[str | None]:
    """Each source's content key: a local file's from the index where its size and time are
    unchanged, else ``compute``d (hashing, in threads: it releases the GIL)."""
    known: dict[int, str | None] = {}
    for i, (ref, key) in enumerate(zip(refs, keys, strict=True)):
        source = (index.get(key) or {}).get("source") or {}
        if source.get("uri") == ref.uri and source.get("stat") is not None and source.get("stat") == file_stat(ref):
            known[i] = source.get("key")
    todo = [i for i in range(len(refs)) if i not in known]
    with ThreadPoolExecutor(8) as pool:
        known |= dict(zip(todo, pool.map(compute, [refs[i] for i in todo]), strict=True))
    return [known[i] for i in range(len(refs))]


def write_index(
    out: Storage, schema: str, old: dict[str, dict[str, Any]], known: dict[str, dict[str, Any]], listed: dict[str, str] | None
) -> dict[str, str]:
    """The index after a run: ``known`` (``{"fingerprint", "status", "source"}`` of the results
    this run wrote or found current), with their versions, and the old entries whose results are
    still at the version they had. ``listed``: the versions now, when the run wrote no result (the
    listing it started with: the lease kept other writers out); None lists them again. Not written
    when it would not change: an unchanged rerun writes nothing. Returns the versions it used."""
    listed = out.versions(f"{schema}/") if listed is None else listed
    entries = {k: e for k, e in old.items() if k not in known and listed.get(k) == e.get("version")}
    entries |= {k: info | {"version": listed[k]} for k, info in known.items() if k in listed}
    if entries != old:
        out.write_json(index_key(schema), {"format": INDEX_FORMAT, "schema": schema, "entries": entries})
    return listed
