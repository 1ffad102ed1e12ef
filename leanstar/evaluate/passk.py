"""pass@k by the unbiased estimator of Chen et al. (2021).

For a problem with n attempts of which c succeeded, the chance that at least one of k attempts
drawn without replacement succeeds is 1 - C(n-c, k) / C(n, k). It is computed as a product,
which stays exact in floating point for any n (the binomials themselves overflow past n ~ 1000).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n attempts and c successes."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


@dataclass(frozen=True)
class ProblemResult:
    name: str
    attempts: int
    proved: int
    split: str = ""


def pass_at_k_table(
    results: Iterable[ProblemResult], ks: Iterable[int] | None = None
) -> dict[int, float]:
    """Mean pass@k over problems for each k (every k up to the smallest attempt count when
    `ks` is None). Problems with fewer than k attempts make pass@k undefined: such k are left out."""
    results = list(results)
    if not results:
        return {}
    n_min = min(r.attempts for r in results)
    ks = range(1, n_min + 1) if ks is None else [k for k in ks if 1 <= k <= n_min]
    return {k: sum(pass_at_k(r.attempts, r.proved, k) for r in results) / len(results) for k in ks}
