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


def test_a_vllm_run_shows_its_gpu_time_beside_the_estimate():
    from pipelines.cost import RunTally
    from pipelines.engines.vllm import PRESETS

    tally = RunTally(PRESETS["8b-1gpu"])
    tally.add(100_000, 1_000, 250)
    tally.held_gpu_s = 95.0
    ok = [DocOutcome("/src/a.pdf", "a", "ok", None, "/out/paper/a.json", prompt_tokens=100_000, completion_tokens=250)]
    text = _summary(RunReport("r3", outcomes=ok, tally=tally))
    assert "completion tokens  250 of a 1,000 budget" in text
    [line] = [line for line in text.splitlines() if line.strip().startswith("GPU time")]
    # 10.7 s of prefill + 2.3 s of decode for 250 tokens; at most 10.7 + 7.3 s at the whole budget
    assert "held 1.6 min (GPUs × the graph's wall time, model loading included)" in line
    assert "estimated 13 s at the tokens generated, at most 18 s (prefill 11 s, at 40% of an H100 SXM 80 GB's peak)" in line
    assert "GPU time" not in _summary(RunReport("r4", outcomes=ok))  # no estimate for other engines
