import math
import random

import pytest

from pipelines.partition import _greedy, balanced_partition


def check(sizes: list[int], budget: int) -> list[int]:
    ranges = balanced_partition(sizes, budget)
    assert [i for r in ranges for i in r] == list(range(len(sizes)))  # every unit once, in order
    sums = [sum(sizes[i] for i in r) for r in ranges]
    assert max(sums) <= budget
    assert len(ranges) == len(_greedy(sizes, budget))  # the fewest windows possible
    assert max(sums) - min(sums) <= max(sizes)  # near-equal
    return sums


def test_fits_in_one_window():
    assert check([10, 20, 30], 100) == [60]


def test_count_is_ceil_when_units_are_small():
    sums = check([1] * 1000, 300)
    assert len(sums) == math.ceil(1000 / 300) == 4
    assert max(sums) - min(sums) <= 1  # not 300, 300, 300, 100


@pytest.mark.parametrize("seed", range(5))
def test_random_documents(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        sizes = [rng.randint(1, rng.choice([5, 50, 500])) for _ in range(rng.randint(1, 80))]
        if rng.random() < 0.2:
            sizes = [rng.choice([1, 1000]) for _ in sizes]
        check(sizes, rng.randint(max(sizes), max(sizes) * rng.randint(1, 8)))


def test_rejects_a_unit_over_budget():
    with pytest.raises(ValueError):
        balanced_partition([5, 50], 40)


def test_many_small_units():
    # How the time grows with the units is bench/scaling.py's.
    rng = random.Random(0)
    check([rng.randint(50, 3000) for _ in range(50_000)], 120_000)
