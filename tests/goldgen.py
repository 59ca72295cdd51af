"""A gold set the project makes itself: PDFs, a note and repositories whose
titles, authors, years, entry points and dependencies are known, with the gold
JSON for each (``gold/<schema>/<file>.json``, as ``longctx run`` lays out its
results). Used by tests/test_evaluate.py and bench/quality.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.pdfgen import make_pdf
from tests.repogen import make_tar_gz, make_zip

ROUTING = [
    """Sparse Routing for Document Transformers

Ada Ruiz, Tomas Berg
Research paper, Lakeside Institute of Computing, 2022

Abstract. We route each token of a long document to two of sixteen expert blocks. On documents of
64,000 tokens, sparse routing cuts inference time by 41% while keeping accuracy within 0.3 points
of the dense model.""",
    """1 Method

Each layer holds sixteen expert blocks and a router that picks two per token. We train on 2,000
long reports for three epochs.

2 Results

Sparse routing is 41% faster at 64,000 tokens. Accuracy falls from 88.1% to 87.8%.""",
]
COOLING = [
    """Cooling Loads in Small Data Centres

Technical report by Lena Park
Published March 2019 by the Northfield Energy Office

Summary. We measured the cooling load of 12 small data centres for a year. Free-air cooling
cut the cooling energy by 23% on average, and by 38% in the three coldest sites.""",
]
NOTE = """# Planning notes, third quarter

We agreed to ship the parser first and the packer second. Testing starts when both are merged.
Open question: who owns the nightly batch.
"""
WORDCOUNT = {
    "README.md": "# wordcount\n\nCounts words in text files, from the command line.\n",
    "pyproject.toml": '[project]\nname = "wordcount"\nversion = "1.0"\ndependencies = ["click>=8", "rich>=13"]\n\n'
    '[project.scripts]\nwc-cli = "wordcount.cli:main"\n',
    "wordcount/__init__.py": "",
    "wordcount/cli.py": "import click\nfrom rich import print\n\n\n@click.command()\n@click.argument('path')\n"
    "def main(path):\n    print(len(open(path).read().split()))\n",
}
HEALTHD = {
    "README.md": "# healthd\n\nA tiny HTTP service that answers /health.\n",
    "go.mod": "module example.com/healthd\n\ngo 1.22\n\nrequire github.com/gorilla/mux v1.8.1\n",
    "main.go": 'package main\n\nimport (\n\t"net/http"\n\n\t"github.com/gorilla/mux"\n)\n\nfunc main() {\n'
    '\tr := mux.NewRouter()\n\tr.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })\n'
    '\thttp.ListenAndServe(":8080", r)\n}\n',
}

GOLD = {
    "paper/routing.pdf.json": {"title": "Sparse Routing for Document Transformers", "authors": ["Ada Ruiz", "Tomas Berg"],
                               "year": 2022, "document_type": "research paper"},
    "paper/cooling.pdf.json": {"title": "Cooling Loads in Small Data Centres", "authors": ["Lena Park"], "year": 2019,
                               "document_type": "technical report"},
    "paper/planning.md.json": {"title": "Planning notes, third quarter", "authors": [], "year": None},
    "repo/wordcount.tar.gz.json": {"name": "wordcount", "languages": ["Python"], "dependencies": ["click", "rich"],
                                   "entry_points": [{"name": "wc-cli"}]},
    "repo/healthd.zip.json": {"name": "healthd", "languages": ["Go"], "dependencies": ["github.com/gorilla/mux"],
                              "entry_points": [{"name": "/health"}]},
}  # fmt: skip


def write_gold_set(root: Path) -> tuple[Path, Path]:
    """``root/docs`` (the documents) and ``root/gold`` (their gold JSON)."""
    docs, gold = root / "docs", root / "gold"
    docs.mkdir(parents=True)
    make_pdf(docs / "routing.pdf", ROUTING, title="Sparse Routing for Document Transformers")
    make_pdf(docs / "cooling.pdf", COOLING, title="Cooling Loads in Small Data Centres")
    (docs / "planning.md").write_text(NOTE)
    make_tar_gz(docs / "wordcount.tar.gz", WORDCOUNT, prefix="wordcount-1.0/")
    make_zip(docs / "healthd.zip", HEALTHD, prefix="healthd/")
    for key, fields in GOLD.items():
        (gold / key).parent.mkdir(parents=True, exist_ok=True)
        (gold / key).write_text(json.dumps(fields, indent=1))
    return docs, gold
