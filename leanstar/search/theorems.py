"""Which theorems a search proves: `SearchConfig.theorems`, filtered by split and limit.

A `.json` file (or `bundled:NAME.json`) is read as LeanDojo Benchmark 4 traces: its theorems
have no statement text, only a recorded initial goal, so only environments that start theorems
by name (replay, LeanDojo) can search them. Anything else goes through `load_theorems`
(miniF2F layouts, leanstar theorem files, `hf:` datasets).
"""

from __future__ import annotations

from leanstar.config import ConfigError
from leanstar.data import load_leandojo, load_theorems
from leanstar.data.theorems import TheoremFormatError
from leanstar.records import Theorem
from leanstar.search.config import SearchConfig


def is_leandojo_source(source: str) -> bool:
    return source.removeprefix("bundled:").endswith(".json")


def load_search_theorems(cfg: SearchConfig) -> list[Theorem]:
    """The theorems `cfg` names, in file order, after `split` and `limit`. Names must be
    unique: a trajectory is keyed by (theorem, attempt)."""
    if is_leandojo_source(cfg.theorems):
        theorems = [t.as_theorem() for t in load_leandojo(cfg.theorems)]
        if cfg.split:
            theorems = [t for t in theorems if t.split == cfg.split]
    else:
        theorems = load_theorems(cfg.theorems, split=cfg.split or None)
    if not theorems:
        where = f" with split {cfg.split!r}" if cfg.split else ""
        raise ConfigError(f"{cfg.theorems}: no theorems{where}")
    check_unique(theorems, cfg.theorems)
    return theorems[: cfg.limit] if cfg.limit > 0 else theorems


def check_unique(theorems: list[Theorem], where: str) -> None:
    seen: set[str] = set()
    for thm in theorems:
        if thm.name in seen:
            raise TheoremFormatError(f"{where}: theorem name {thm.name!r} occurs twice")
        seen.add(thm.name)
