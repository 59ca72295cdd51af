"""Regenerate the bundled examples: ``uv run python -m tests.make_examples``.

The project makes its own examples so that their content and license are
ours: a five-page technical report (PDF), a small code repository (.tar.gz)
and a Markdown note. The outputs are committed; this script documents them.
"""

from __future__ import annotations

from pathlib import Path

from tests.pdfgen import make_pdf
from tests.repogen import make_tar_gz

HERE = Path(__file__).parent.parent / "examples"

REPORT = [
    """Reading Whole Documents: A Field Report on Long-Context Extraction

Authors: Mira Okafor, Jonas Lindqvist, Priya Raman
Northwind Data Lab, Technical Report NDL-TR-2024-07, September 2024

Abstract

We report on six months of running structured extraction over long documents in production.
Instead of splitting documents into retrieval chunks of 512 tokens, we give the model the whole
document, up to 128,000 tokens, in one prompt. On a set of 1,200 annual reports and contracts,
whole-document prompts raised field-level accuracy from 71.4% to 86.9% and cut the number of
contradictory answers per document from 2.3 to 0.4. We describe the pipeline, the costs, and
three failure modes that remain.""",
    """1 Introduction

Most extraction pipelines were designed when language models read a few thousand tokens at a
time. They split each document into chunks, retrieve the chunks that look relevant, and ask the
model to answer from those. That design loses information that lives across sections: a clause
on page 3 that is amended on page 41, a table whose header is on the previous page, a number
that is defined once in a glossary.

Our research questions were: (1) does whole-document prompting improve accuracy on long
documents? (2) what does it cost in GPU time? (3) which errors remain?

2 Method

We used Llama 3.1 8B Instruct with a context of 128K tokens, served with vLLM on H100 GPUs.
Each document was rendered into one chat prompt: the document first, then the task and a JSON
schema. Decoding was constrained by the schema. Documents longer than the context were split
into the fewest near-equal parts, and the answers merged field by field.

The evaluation set holds 800 annual reports (median 96 pages) and 400 commercial contracts
(median 31 pages), each annotated by two reviewers with 24 fields.""",
    """3 Results

Field-level accuracy rose from 71.4% with chunked retrieval to 86.9% with whole documents.
The gain was largest for fields that depend on several sections: effective dates changed by
amendments (+31 points), total liability caps (+22 points) and named subsidiaries (+18 points).

Contradictions, where two chunks gave different answers for the same field, fell from 2.3 to
0.4 per document. Most remaining contradictions came from documents longer than 128K tokens,
which still had to be split.

Prefill dominated the cost. A 128K-token prompt took about 10 seconds of prefill on one H100;
the answer of about 400 tokens took another 2 seconds. With prefix caching, asking a second
schema of the same document cost 40% of the first.""",
    """4 Limitations

Scanned documents without a text layer were excluded; OCR quality would dominate the result.
The evaluation covers English documents only. The 8B model sometimes copied numbers from a
neighbouring table row; a 70B model made this error five times less often at four times the cost.
Our reviewers disagreed on 6% of fields, which bounds the accuracy we can measure.

5 Conclusion

Reading the whole document is both simpler and more accurate than retrieving chunks, at a cost
that is acceptable for batch work. We recommend token-exact packing with the model's own
tokenizer, one document per prompt, constrained decoding, and recording every failure rather
than dropping it.""",
    """Appendix A: Settings

max_model_len = 131072; max_num_seqs = 16; max_num_batched_tokens = 16384; temperature = 0.
Prompts were packed with the model's own tokenizer, and no prompt exceeded the context.

Appendix B: Fields

Annual reports: company name, fiscal year, revenue, net income, auditor, subsidiaries,
segment names, risk factors. Contracts: parties, effective date, term, renewal, governing law,
payment terms, liability cap, termination rights, assignment, confidentiality period.""",
]

REPO = {
    "README.md": """# tinykv

A tiny persistent key-value store with a command line, for teaching. Values are
kept in an append-only log file; on start the log is replayed into a dict.

    python -m tinykv set greeting hello
    python -m tinykv get greeting
""",
    ".gitignore": "__pycache__/\n*.log\n!keep.log\n",
    "tinykv/__init__.py": (
        '"""tinykv: an append-only key-value store."""\n\nfrom tinykv.store import Store\n\n__all__ = ["Store"]\n'
    ),
    "tinykv/store.py": '''"""The store: an in-memory dict backed by an append-only JSON-lines log."""

import json
import os


class Store:
    def __init__(self, path):
        self.path = path
        self.data = {}
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    op = json.loads(line)
                    if op["op"] == "set":
                        self.data[op["key"]] = op["value"]
                    else:
                        self.data.pop(op["key"], None)

    def _append(self, op):
        # fsync so that an acknowledged write survives a crash
        with open(self.path, "a") as f:
            f.write(json.dumps(op) + "\\n")
            f.flush()
            os.fsync(f.fileno())

    def set(self, key, value):
        self._append({"op": "set", "key": key, "value": value})
        self.data[key] = value

    def delete(self, key):
        self._append({"op": "del", "key": key})
        self.data.pop(key, None)

    def get(self, key, default=None):
        return self.data.get(key, default)
''',
    "tinykv/__main__.py": '''"""Command line: python -m tinykv set|get|del KEY [VALUE]."""

import sys

from tinykv.store import Store


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    store = Store(".tinykv.log")
    cmd, key = argv[0], argv[1]
    if cmd == "set":
        store.set(key, argv[2])
    elif cmd == "get":
        print(store.get(key, ""))
    elif cmd == "del":
        store.delete(key)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
''',
    "tests/test_store.py": """from tinykv.store import Store


def test_set_get_survives_reopen(tmp_path):
    path = tmp_path / "db.log"
    Store(path).set("a", "1")
    assert Store(path).get("a") == "1"
""",
    "poetry.lock": "# a lockfile: skipped by longctx\n",
    "debug.log": "ignored by .gitignore\n",
}


def main() -> None:
    title = "Reading Whole Documents: A Field Report on Long-Context Extraction"
    make_pdf(HERE / "field-report.pdf", REPORT, title=title)
    make_tar_gz(HERE / "tinykv.tar.gz", REPO, prefix="tinykv-main/")
    print("wrote", *(p.name for p in sorted(HERE.iterdir()) if p.suffix in (".pdf", ".gz", ".md")))


if __name__ == "__main__":
    main()
