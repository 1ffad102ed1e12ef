"""Loading a causal LM checkpoint for sampling: dtype as configured, Q-Sparse restored.

A checkpoint saved under Q-Sparse carries its settings in config.json; `load_model` re-applies
them, so a sampler serves the sparse prover that was trained, never silently the dense one.
"""

from __future__ import annotations


def load_causal_lm(path: str, dtype: str = "auto"):
    from leanstar.sparse.qsparse import load_model

    return load_model(path, dtype=dtype)
