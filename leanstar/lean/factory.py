"""Choosing the proof environment: `make_env(cfg)` turns a `LeanConfig` into a `ProofEnv`.

    repl    the pooled Lean REPL (needs `leanstar lean setup`, or `lean.repl_command`)
    dojo    LeanDojo over a traced repository (the `dojo` extra)
    replay  recorded LeanDojo states: `lean.replay_data`, or the bundled Benchmark 4 sample
    auto    repl when `leanstar lean doctor` finds a usable setup (or a repl_command is given),
            else replay, saying so in one line

The search runner and the iterate / eval stages call this and `await env.close()` when done.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable

from leanstar.config import LeanConfig
from leanstar.lean.env import ProofEnv
from leanstar.records import REPLAY_LABEL

BUNDLED_REPLAY = "bundled:leandojo-benchmark4-sample.json"


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def make_env(cfg: LeanConfig, notice: Callable[[str], None] | None = None) -> ProofEnv:
    """The environment `cfg.backend` names. `notice` receives the one-line message printed
    when `auto` falls back to replay (default: stderr)."""
    backend = cfg.backend
    if backend == "auto":
        from leanstar.lean.setup import inspect

        install = None if cfg.repl_command else inspect(cfg)
        if install is None or install.usable:
            backend = "repl"
        else:
            say = notice or (lambda line: print(line, file=sys.stderr))
            say(
                "leanstar: no Lean toolchain found (see `leanstar lean doctor`); using the replay "
                f"environment, so results are {REPLAY_LABEL!r}"
            )
            backend = "replay"
    if backend == "repl":
        return make_repl_pool(cfg)
    if backend == "dojo":
        from leanstar.lean.dojo import DojoEnv

        return DojoEnv.from_config(cfg)
    if backend == "replay":
        from leanstar.lean.replay import ReplayEnv

        return ReplayEnv.from_file(
            cfg.replay_data or BUNDLED_REPLAY, allow_native_decide=cfg.allow_native_decide
        )
    raise ValueError(f"unknown lean.backend {cfg.backend!r} (expected auto, repl, dojo, replay)")


def make_repl_pool(cfg: LeanConfig):
    from leanstar.lean.pool import Launch, PoolOptions, ReplPool
    from leanstar.lean.setup import PINNED_LEAN, LeanSetupError, find_tool, inspect, project_dir

    workers = cfg.num_workers or default_workers()
    options = PoolOptions.from_config(cfg, workers)
    if cfg.repl_command:
        cwd = str(project_dir(cfg)) if cfg.project_dir else None
        launch = Launch(tuple(shlex.split(cfg.repl_command)), cwd=cwd)
        return ReplPool(launch, options, label=f"Lean REPL ({cfg.repl_command})")
    install = inspect(cfg)
    if not install.usable:
        raise LeanSetupError(
            f"lean.backend=repl, but {install.summary()}. Run `leanstar lean doctor` for "
            "details and `leanstar lean setup` to install (needs network)."
        )
    lake = find_tool("lake")
    launch = Launch((lake, "env", str(install.repl_binary)), cwd=str(install.project_dir))
    version = (install.toolchain_pin or PINNED_LEAN).rpartition(":")[2]
    return ReplPool(launch, options, label=f"Lean REPL (Lean {version})")
