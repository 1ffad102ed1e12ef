"""Loaders for the data leanstar reads: LeanDojo Benchmark 4 traces, miniF2F, bundled samples."""

from leanstar.data.bundled import bundled_path
from leanstar.data.leandojo import LeanDojoTheorem, load_leandojo, sample_pairs, traced_steps
from leanstar.data.theorems import load_theorems, parse_statement

__all__ = [
    "LeanDojoTheorem",
    "bundled_path",
    "load_leandojo",
    "load_theorems",
    "parse_statement",
    "sample_pairs",
    "traced_steps",
]
