from math import comb

import pytest

from leanstar.evaluate.passk import ProblemResult, pass_at_k, pass_at_k_table


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),  # c / n
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3)
        (5, 2, 4, 1.0),  # fewer failures than k
        (5, 0, 3, 0.0),  # c = 0
        (5, 5, 1, 1.0),  # c = n
        (8, 1, 8, 1.0),  # k = n with a success
        (8, 0, 8, 0.0),  # k = n without
        (32, 3, 8, 1 - comb(29, 8) / comb(32, 8)),
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_large_n_stays_finite():
    assert pass_at_k(5000, 1, 64) == pytest.approx(64 / 5000)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_invalid_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_table_averages_over_problems():
    results = [ProblemResult("a", 4, 0), ProblemResult("b", 4, 4), ProblemResult("c", 4, 1)]
    table = pass_at_k_table(results)
    assert list(table) == [1, 2, 3, 4]
    assert table[1] == pytest.approx((0 + 1 + 0.25) / 3)
    assert table[4] == pytest.approx(2 / 3)
    assert pass_at_k_table(results, ks=[1, 8]) == {1: table[1]}  # k > n is undefined, left out
    assert pass_at_k_table([]) == {}
