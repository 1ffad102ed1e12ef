"""Building a search node's sampler and environment from its config: `make_generator` and the
Lean layer's `make_env` (repl, dojo, replay, or auto: repl when set up, else replay with a
notice)."""

from __future__ import annotations

from leanstar.generation.base import Generator, make_generator
from leanstar.lean.env import ProofEnv
from leanstar.search.config import SearchConfig


def build_env(cfg: SearchConfig) -> ProofEnv:
    from leanstar.lean.factory import make_env

    return make_env(cfg.lean)


def build_generator(cfg: SearchConfig) -> Generator:
    return make_generator(cfg.generator)


def build_node_parts(cfg: SearchConfig) -> tuple[Generator, ProofEnv]:
    """The default node factory: a sampler and an environment, both from `cfg`."""
    return build_generator(cfg), build_env(cfg)
