"""Pack one document into token-exact prompt windows.

Every unit (page or file) is encoded once, with its header. A document that
fits the budget is one prompt; a longer one gets the fewest near-equal windows
at unit boundaries (``balanced_partition``), and a unit larger than a window
is first cut at paragraph, then line boundaries. Window ids are the
concatenation of parts encoded separately, which equals one encode of the
rendered prompt because every part boundary is a newline followed by a
non-space character (see ``Llama31Chat``); tests check this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from pipelines import prompt
from pipelines.chat import REASONING_FRAME_TOKENS, ChatFormat
from pipelines.evidence import Span
from pipelines.partition import balanced_partition
from pipelines.records import Document
from schemas import SchemaSpec

DEFAULT_MAX_MODEL_LEN = 131_072
# A repository's file tree goes into every window; past this share of the
# budget it is replaced by a per-directory summary.
TREE_MAX_SHARE = 0.10
BOUNDARY_SLACK = 2  # tokens per part boundary, for chat formats without exact parts
MIN_BUDGET = 64  # fewer document tokens per window than this is a misconfiguration

Encode = Callable[[str], list[int]]


class PackError(ValueError):
    """The settings leave no room for the document (e.g. max_model_len too small)."""


@dataclass(frozen=True, slots=True)
class PackSettings:
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    max_output_tokens: int | None = None  # None: the schema's own bound
    reasoning_tokens: int | None = None  # a reasoning model's <think> bound (chat.reasoning_budget); None: it does not think

    def output_tokens(self, schema: SchemaSpec) -> int:
        """The output budget of a window: the answer's, and a reasoning model's thinking with its tags."""
        answer = self.max_output_tokens or schema.max_output_tokens
        return answer if self.reasoning_tokens is None else answer + self.reasoning_tokens + REASONING_FRAME_TOKENS


@dataclass(slots=True)
class Segment:
    """A unit, or a piece of an oversized unit, with its header, encoded."""

    ref: int | str
    text: str
    ids: list[int]
    body: Span  # the unit's text in it, where it is in the unit (for evidence)


@dataclass(slots=True)
class Window:
    doc_id: str
    source: str
    index: int  # 0-based
    count: int
    units: list[int | str]  # pages or file paths, in order, each once
    spans: list[Span]  # the document text in it, by unit, with offsets into each unit's text
    prompt_ids: list[int]
    prompt_text: str = field(repr=False)
    document_tokens: int  # tokens of the document's own units in this window
    budget: int  # the most document tokens a window of this document may hold
    max_model_len: int
    max_output_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)


@dataclass(slots=True)
class Packed:
    doc: Document
    windows: list[Window]
    document_tokens: int  # all units with their headers, once


def pack_document(doc: Document, schema: SchemaSpec, chat: ChatFormat, settings: PackSettings = PackSettings()) -> Packed:
    if doc.status != "ok":
        raise PackError(f"document is {doc.status}: {doc.reason}")
    if not doc.units:
        raise PackError("document has no units to read")
    out_tokens = settings.output_tokens(schema)
    limit = settings.max_model_len - out_tokens  # no prompt may be longer
    tag = prompt.boundary_tag(doc)
    tail = prompt.document_tail(tag) + "\n" + prompt.task(schema, tag)

    def frame_tokens(tree: str | None) -> int:
        head = prompt.document_head(doc, tag, prompt.longest_part_label(doc), tree)
        return len(chat.encode(prompt.SYSTEM, [head, tail]))

    tree = _tree(doc, chat, limit - frame_tokens(None))
    budget = limit - frame_tokens(tree)  # DESIGN decision 1, with the longest label
    if budget < MIN_BUDGET:
        raise PackError(
            f"max_model_len={settings.max_model_len} leaves {budget} tokens for the document "
            f"after the prompt frame and max_output_tokens={out_tokens}"
        )
    # A tokenizer whose parts do not join exactly may merge or split a token at
    # each boundary: count a little slack per segment so the whole stays in budget.
    slack = 0 if chat.exact_parts else BOUNDARY_SLACK
    segments = _segments(doc, chat.tokenizer.encode, budget - slack)
    sizes = [len(s.ids) + slack for s in segments]
    ranges = balanced_partition(sizes, budget)
    windows = []
    for k, r in enumerate(ranges):
        segs = segments[r.start : r.stop]
        refs = list(dict.fromkeys(s.ref for s in segs))
        label = None
        if len(ranges) > 1:
            label = prompt.part_label(doc, k, len(ranges), _position(doc, refs[0]), _position(doc, refs[-1]))
        head = prompt.document_head(doc, tag, label, tree)
        ids = chat.encode(prompt.SYSTEM, [head, *((s.text, s.ids) for s in segs), tail])
        if len(ids) > limit:  # a bug, never an input error
            raise AssertionError(f"window {k} of {doc.doc_id} has {len(ids)} tokens, over {limit}")
        windows.append(
            Window(
                doc_id=doc.doc_id,
                source=doc.source,
                index=k,
                count=len(ranges),
                units=refs,
                spans=[s.body for s in segs],
                prompt_ids=ids,
                prompt_text=chat.render(prompt.SYSTEM, "".join([head, *(s.text for s in segs), tail])),
                document_tokens=sum(sizes[r.start : r.stop]),
                budget=budget,
                max_model_len=settings.max_model_len,
                max_output_tokens=out_tokens,
            )
        )
    return Packed(doc=doc, windows=windows, document_tokens=sum(sizes))


def _position(doc: Document, ref: int | str) -> int:
    if doc.kind == "pdf":
        return int(ref)  # page numbers are their own 1-based positions
    return next(i for i, u in enumerate(doc.units, 1) if u.ref == ref)


def _tree(doc: Document, chat: ChatFormat, room: int) -> str | None:
    if doc.kind != "repo":
        return None
    paths = [str(u.ref) for u in doc.units]
    limit = int(room * TREE_MAX_SHARE)
    for candidate in (prompt.file_tree(paths), prompt.directory_summary(paths)):
        if chat.tokenizer.count(candidate) <= limit:
            return candidate
    return None


def _segments(doc: Document, encode: Encode, budget: int) -> list[Segment]:
    out: list[Segment] = []
    for unit in doc.units:
        body = unit.text.strip()
        text = prompt.unit_header(doc, unit.ref) + (body + "\n" if body else "")
        ids = encode(text)
        if len(ids) <= budget:
            out.append(Segment(unit.ref, text, ids, Span.within(unit, body, 0)))
            continue
        # Oversized: cut the body so that each piece with its (longest) header fits.
        header = len(encode(prompt.unit_header(doc, unit.ref, 99_999, 99_999)))
        pieces = cut_text(body, budget - header, encode)
        at = 0
        for p, piece in enumerate(pieces):
            text = prompt.unit_header(doc, unit.ref, p, len(pieces)) + piece + "\n"
            span = Span.within(unit, piece, at)  # pieces are the unit's text in order, stripped at the cuts
            at = span.start + len(piece)
            out.append(Segment(unit.ref, text, encode(text), span))
    return out


def cut_text(text: str, limit: int, encode: Encode) -> list[str]:
    """Cut text into about ceil(tokens / limit) near-equal stripped pieces, each
    at most ``limit`` tokens with a trailing newline. Cuts fall on the paragraph
    break nearest each even split point, else a line break, else a space."""
    text = text.strip()
    if not text:
        return []
    tokens = len(encode(text + "\n"))
    if tokens <= limit:
        return [text]
    if len(text) == 1:
        raise PackError(f"no room for a single character in {limit} tokens")
    k = -(-tokens // limit)
    span = len(text) / k
    cuts = [0]
    for j in range(1, k):
        cuts.append(_boundary_near(text, int(j * span), int(span / 2), cuts[-1]))
    cuts.append(len(text))
    # Every cut lies strictly inside the text, so each piece is shorter and the
    # recursion ends; a piece still over the limit (the split is by characters,
    # not tokens) is cut again.
    return [p for a, b in pairwise(cuts) if a < b for p in cut_text(text[a:b], limit, encode)]


def _boundary_near(text: str, at: int, reach: int, floor: int) -> int:
    lo, hi = max(floor + 1, at - reach), min(len(text) - 1, at + reach)
    for sep in ("\n\n", "\n", " "):
        left = text.rfind(sep, lo, at + 1)
        right = text.find(sep, at, hi)
        best = min((i for i in (left, right) if i > floor), key=lambda i: abs(i - at), default=-1)
        if best > floor:
            return best
    return max(at, floor + 1)
