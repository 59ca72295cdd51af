"""Cut a sequence of sized units into contiguous, near-equal windows.

DESIGN decision 3: a document of T tokens gets ceil(T / budget) windows of
near-equal size (as few as its units allow), not a greedy fill with a tiny tail.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate, pairwise


def balanced_partition(sizes: list[int], budget: int) -> list[range]:
    """Contiguous ranges of ``sizes``, each summing to at most ``budget``.

    Uses the fewest windows possible and, with that count, puts every
    window's sum in a band [lo, lo + u] where u is the largest size: any two
    windows differ by at most one unit. The band is placed by binary search.
    """
    if not sizes:
        return []
    u = max(sizes)
    if u > budget:
        raise ValueError(f"a unit of {u} exceeds the budget of {budget}")
    if min(sizes) <= 0:
        raise ValueError("unit sizes must be positive")
    greedy = _greedy(sizes, budget)  # a greedy fill needs the fewest windows
    n = len(greedy)
    prefix = [0, *accumulate(sizes)]
    width = u
    while width < budget:
        cuts = _cuts_in_some_band(prefix, n, width, budget)
        if cuts is not None:
            return [range(a, b) for a, b in pairwise(cuts)]
        width += max(1, width // 2)  # not seen in practice: widen and retry
    return greedy


def _cuts_in_some_band(prefix: list[int], n: int, width: int, budget: int) -> list[int] | None:
    """Cut positions putting all n window sums in [lo, lo + width] for some lo, or None.

    Because no unit is wider than the band, the prefix sums reachable after k
    windows form one contiguous run [L_k, U_k]. Both ends grow with lo, so
    bisection finds the lowest lo whose U_n reaches the total and the highest
    whose L_n does not pass it; a band between them fits.
    """
    total = prefix[-1]
    top = budget - width
    if top < 1:
        return None
    lo_min = _bisect_first(1, top, lambda lo: _reach(prefix, n, lo, lo + width)[1][-1] >= total)
    lo_max = _bisect_first(1, top + 1, lambda lo: _reach(prefix, n, lo, lo + width)[0][-1] > total) - 1
    for lo in dict.fromkeys((lo_min, (lo_min + lo_max) // 2, lo_max)):
        if 1 <= lo <= top:
            lows, highs = _reach(prefix, n, lo, lo + width)
            if lows[-1] <= total <= highs[-1] and all(lo_k <= hi_k for lo_k, hi_k in zip(lows, highs, strict=True)):
                return _backtrack(prefix, lows, highs, lo, lo + width)
    return None


def _bisect_first(a: int, b: int, pred) -> int:
    """The least x in [a, b] with pred(x) true, pred monotone; b if none before it."""
    while a < b:
        mid = (a + b) // 2
        if pred(mid):
            b = mid
        else:
            a = mid + 1
    return a


def _reach(prefix: list[int], n: int, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """L_k and U_k for k = 0..n: the least prefix sum >= L_{k-1} + lo and the
    greatest <= U_{k-1} + hi. L past the total means unreachable."""
    lows, highs = [0], [0]
    for _ in range(n):
        i = bisect_left(prefix, lows[-1] + lo)
        lows.append(prefix[i] if i < len(prefix) else prefix[-1] + 1)
        highs.append(prefix[bisect_right(prefix, highs[-1] + hi) - 1])
    return lows, highs


def _backtrack(prefix: list[int], lows: list[int], highs: list[int], lo: int, hi: int) -> list[int]:
    cuts = [len(prefix) - 1]
    for k in range(len(lows) - 2, -1, -1):
        end = prefix[cuts[-1]]
        # any reachable prefix p with end - p in [lo, hi] will do; take the first
        cuts.append(bisect_left(prefix, max(lows[k], end - hi)))
        assert prefix[cuts[-1]] <= min(highs[k], end - lo)
    return cuts[::-1]


def _greedy(sizes: list[int], budget: int) -> list[range]:
    out, start, acc = [], 0, 0
    for i, s in enumerate(sizes):
        if acc + s > budget:
            out.append(range(start, i))
            start, acc = i, 0
        acc += s
    out.append(range(start, len(sizes)))
    return out
