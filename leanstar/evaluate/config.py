"""Config of `leanstar eval`."""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.config import nested, option
from leanstar.search.config import SearchConfig


@dataclass
class EvalConfig:
    run_dir: str = option("runs/eval", "run directory (trajectories, per-problem results, report)")
    ks: list[int] = option(
        [1, 8, 32], "k values to print in tables (pass@k is computed for every k <= n)"
    )
    search: SearchConfig = nested(
        SearchConfig, "the search protocol (theorems, K, temperature, steps)"
    )
