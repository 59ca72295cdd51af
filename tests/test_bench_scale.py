"""bench/scale.py's extrapolation: a pure function, checked by hand-computed figures."""

from bench.scale import extrapolate


def _row(n: int, first: float, rss: float, unchanged: float, one: float, pct: float) -> dict:
    return {"store": "local", "documents": n, "first_run_s": first, "ms_per_document": 1000 * first / n,
            "driver_peak_rss_mb": rss, "unchanged_rerun_s": unchanged, "one_changed_s": one,
            "one_percent_changed_s": pct}  # fmt: skip


def test_the_100k_row_lies_on_the_line_through_the_two_largest_sizes_and_says_it_was_not_measured():
    row = extrapolate(_row(1000, 30.0, 300, 14.0, 30.0, 31.0), _row(10_000, 120.0, 390, 23.0, 32.0, 41.0), 100_000)
    # each figure: b + (b - a) / 9,000 * 90,000, i.e. b + 10 (b - a)
    assert row["extrapolated"] is True and row["documents"] == 100_000 and row["store"] == "local"
    assert row["first_run_s"] == 1020.0 and row["ms_per_document"] == 10.2
    assert row["driver_peak_rss_mb"] == 1290
    assert (row["unchanged_rerun_s"], row["one_changed_s"], row["one_percent_changed_s"]) == (113.0, 52.0, 141.0)


def test_no_extrapolated_cost_falls_below_the_larger_size_measured():
    # the one-changed rerun, a fixed cost, measured 32.8 s at 1,000 and 30.1 s at 10,000
    row = extrapolate(_row(1000, 30.0, 300, 4.3, 32.8, 35.3), _row(10_000, 120.0, 390, 5.5, 30.1, 38.1), 100_000)
    assert row["one_changed_s"] == 30.1 and row["unchanged_rerun_s"] == 17.5
