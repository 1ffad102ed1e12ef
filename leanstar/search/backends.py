"""Building a search node's sampler and environment from its config.

The environment comes from `leanstar.lean.factory.make_env` once that exists; until then the
replay environment is built here for `lean.backend: replay` (and `auto`, which is what auto
picks on a machine without a Lean toolchain), and the other backends are refused.
"""

from __future__ import annotations

import importlib

from leanstar.data.bundled import LEANDOJO_SAMPLE
from leanstar.generation.base import Generator, make_generator
from leanstar.lean.env import ProofEnv
from leanstar.search.config import SearchConfig
from leanstar.search.progress import notice


class BackendNotBuilt(RuntimeError):
    """The config asks for a Lean backend this build of leanstar does not have yet."""


def build_env(cfg: SearchConfig) -> ProofEnv:
    try:
        factory = importlib.import_module("leanstar.lean.factory")
    except ModuleNotFoundError as e:
        if e.name != "leanstar.lean.factory":
            raise
        return _interim_env(cfg)
    return factory.make_env(cfg.lean)


def _interim_env(cfg: SearchConfig) -> ProofEnv:
    from leanstar.lean.replay import ReplayEnv

    backend = cfg.lean.backend
    if backend not in ("replay", "auto"):
        raise BackendNotBuilt(
            f"lean.backend {backend!r} is not built yet; use lean.backend=replay (recorded "
            "LeanDojo states, not checked by Lean)"
        )
    if backend == "auto":
        notice("no Lean REPL backend is built; using the replay environment (not checked by Lean)")
    return ReplayEnv.from_file(cfg.lean.replay_data or f"bundled:{LEANDOJO_SAMPLE}")


def build_generator(cfg: SearchConfig) -> Generator:
    return make_generator(cfg.generator)


def build_node_parts(cfg: SearchConfig) -> tuple[Generator, ProofEnv]:
    """The default node factory: a sampler and an environment, both from `cfg`."""
    return build_generator(cfg), build_env(cfg)
