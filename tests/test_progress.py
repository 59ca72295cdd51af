"""The run summary: a nightly batch with thousands of failures lists ten, and says where the rest are."""

import io

from rich.console import Console

from jobs.progress import MAX_SHOWN, print_summary
from pipelines.finish import DocOutcome
from pipelines.records import Skipped
from pipelines.run import RunReport


def _summary(report: RunReport) -> str:
    out = io.StringIO()
    print_summary(Console(file=out, width=300), report, "openai", "/out/paper")
    return out.getvalue()


def test_the_summary_lists_the_first_failures_and_counts_the_rest():
    failed = [DocOutcome(f"/src/f{i}.pdf", f"f{i}", "failed", f"reason {i}", f"/out/paper/f{i}.json") for i in range(25)]
    ok = [DocOutcome(f"/src/o{i}.pdf", f"o{i}", "ok", None, f"/out/paper/o{i}.json") for i in range(3)]
    ignored = [Skipped(f"/src/x{i}.bin", "not a PDF") for i in range(12)]
    text = _summary(RunReport("r1", outcomes=ok + failed, ignored=ignored, manifest="/out/_runs/r1/manifest.json"))
    shown = [line for line in text.splitlines() if line.startswith("  failed ")]
    assert shown == [f"  failed /src/f{i}.pdf: reason {i}" for i in range(MAX_SHOWN)]
    assert f"... and {25 - MAX_SHOWN} more failed or partial (see the run's sources.jsonl)" in text
    assert sum(line.startswith("  ignored ") for line in text.splitlines()) == MAX_SHOWN
    assert f"... and {12 - MAX_SHOWN} more ignored (see the manifest)" in text


def test_a_few_failures_are_all_listed_without_a_remainder_line():
    failed = [DocOutcome(f"/src/f{i}.pdf", f"f{i}", "partial", "window 2 failed", f"/out/f{i}.json") for i in range(3)]
    text = _summary(RunReport("r2", outcomes=failed))
    assert sum(line.startswith("  partial ") for line in text.splitlines()) == 3
    assert "more failed" not in text
