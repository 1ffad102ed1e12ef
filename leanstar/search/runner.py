"""`leanstar search`: prove many theorems, one trajectory record per attempt, resumable.

    leanstar search --config configs/search-replay.yaml

Programmatic use (expert iteration, evaluation) goes through `run_search` or, to keep one
sampler and one environment across several searches, a `SearchSession`:

    with SearchSession(generator=gen, env=env) as session:
        for k in rounds:
            summary = session.run(cfg_k, round=k)   # cfg_k.run_dir = RUN_DIR/round-k

A session owns one event loop for its lifetime, so an environment whose Lean processes are
bound to a loop keeps working from one search to the next. It closes only what it built.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable

from leanstar.config import ConfigError
from leanstar.data.leandojo import LeanDojoFormatError
from leanstar.data.theorems import TheoremFormatError
from leanstar.generation.base import Generator
from leanstar.jsonl import JsonlWriter
from leanstar.lean.env import ProofEnv
from leanstar.lean.setup import LeanSetupError
from leanstar.records import Theorem
from leanstar.rundir import RunDir, RunDirBusy
from leanstar.search import store
from leanstar.search.backends import build_env, build_generator
from leanstar.search.bookkeeping import Bookkeeper, SearchSummary, describe
from leanstar.search.config import SearchConfig, check_search_config
from leanstar.search.meter import Usage
from leanstar.search.node import SearchNode
from leanstar.search.progress import notice
from leanstar.search.theorems import load_search_theorems

NodeFactory = Callable[[], tuple[Generator, ProofEnv]]
# Errors in what the user asked for: reported in one line, no traceback.
USER_ERRORS = (
    ConfigError,
    store.ResumeConflict,
    LeanSetupError,
    RunDirBusy,
    FileNotFoundError,
    TheoremFormatError,
    LeanDojoFormatError,
)


class SearchSession:
    def __init__(
        self,
        generator: Generator | None = None,
        env: ProofEnv | None = None,
        node_factory: NodeFactory | None = None,
    ) -> None:
        """`generator` and `env` are used as given and left open; missing ones are built from
        the first config and closed with the session. `node_factory` builds a sampler and an
        environment inside each Ray worker (default: from the config)."""
        self.generator, self.env = generator, env
        self._own_generator = self._own_env = False
        self.node_factory = node_factory
        self._loop = asyncio.new_event_loop()

    def __enter__(self) -> SearchSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        cfg: SearchConfig,
        *,
        theorems: list[Theorem] | None = None,
        round: int = 0,
        progress: bool | None = None,
    ) -> SearchSummary:
        """Search `theorems` (default: those `cfg.theorems` names) into `cfg.run_dir`."""
        return self._loop.run_until_complete(self._run(cfg, theorems, round, progress))

    def close(self) -> None:
        """Cancel what is still running (after Ctrl-C), then close what the session built."""
        loop = self._loop
        if loop.is_closed():
            return
        try:
            loop.run_until_complete(_cancel_others())
            if self._own_env and self.env is not None:
                loop.run_until_complete(self.env.close())
            if self._own_generator and self.generator is not None:
                self.generator.close()
        finally:
            loop.close()

    # -- one search -----------------------------------------------------------
    async def _run(self, cfg, theorems, round, progress) -> SearchSummary:
        check_search_config(cfg)
        rd = RunDir(cfg.run_dir).lock()
        try:
            if theorems is None:
                theorems = load_search_theorems(cfg)
            with JsonlWriter(rd / store.TRAJECTORIES) as writer:  # opening repairs a cut tail
                written = store.read_written(rd)
                if cfg.ray:
                    return await self._run_ray(cfg, rd, theorems, written, writer, round, progress)
                env = self._env(cfg)
                theorems, skipped = startable(theorems, getattr(env, "knows", None))
                store.check_resumable(rd, cfg, written, env.label)
                work = _prepare(rd, cfg, theorems, written)
                run = Bookkeeper(cfg, rd, theorems, work, written, writer, progress)
                if not work:
                    return run.finish(env.label, skipped, Usage())
                node = SearchNode(cfg, self._generator(cfg), env, round)
                before = Counter(getattr(env, "stats", None) or {})  # the REPL pool's events
                try:
                    await run.drive(node.prove_all(work, run.emit), node.usage)
                finally:
                    await node.close()
                events = Counter(getattr(env, "stats", None) or {})
                events.subtract(before)
                return run.finish(env.label, skipped, node.usage(), +events)
        finally:
            rd.unlock()

    async def _run_ray(self, cfg, rd, theorems, written, writer, round, progress):
        from leanstar.search.distributed import RayCluster

        if self.generator is not None or self.env is not None:
            raise ValueError(
                "a Ray search builds its sampler and environment on each worker; pass "
                "node_factory to SearchSession instead of a generator or env"
            )
        async with RayCluster(cfg, self.node_factory, round) as cluster:
            label = await cluster.label()
            theorems, skipped = startable(theorems, await cluster.knows_fn(theorems))
            store.check_resumable(rd, cfg, written, label)
            work = _prepare(rd, cfg, theorems, written)
            run = Bookkeeper(cfg, rd, theorems, work, written, writer, progress)
            await run.drive(cluster.prove_all(work, run.emit), cluster.usage_so_far)
            return run.finish(label, skipped, await cluster.usage())

    def _env(self, cfg: SearchConfig) -> ProofEnv:
        if self.env is None:
            self.env, self._own_env = build_env(cfg), True
        return self.env

    def _generator(self, cfg: SearchConfig) -> Generator:
        if self.generator is None:
            self.generator, self._own_generator = build_generator(cfg), True
        return self.generator


async def _cancel_others() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_search(
    cfg: SearchConfig,
    *,
    theorems: list[Theorem] | None = None,
    generator: Generator | None = None,
    env: ProofEnv | None = None,
    round: int = 0,
    progress: bool | None = None,
    node_factory: NodeFactory | None = None,
) -> SearchSummary:
    """One search into `cfg.run_dir` (see `SearchSession.run`)."""
    with SearchSession(generator, env, node_factory) as session:
        return session.run(cfg, theorems=theorems, round=round, progress=progress)


def startable(theorems: list[Theorem], knows) -> tuple[list[Theorem], dict[str, str]]:
    """Theorems the environment can start (`knows`: the replay environment's test; None: all)."""
    if knows is None:
        return theorems, {}
    keep = [t for t in theorems if knows(t.name)]
    skipped = {t.name: "not in the replay recording" for t in theorems if not knows(t.name)}
    if skipped:
        notice(f"skipping {len(skipped)} of {len(theorems)} theorems the replay recording lacks")
    if not keep:
        raise ValueError("none of the theorems can be started by this environment")
    return keep, skipped


def _prepare(rd: RunDir, cfg: SearchConfig, theorems, written) -> list[tuple[Theorem, list[int]]]:
    rd.save_config(cfg)
    store.record_theorems(rd, theorems)
    work = []
    for thm in theorems:
        todo = [a for a in range(cfg.attempts) if (thm.name, a) not in written.keys]
        if todo:
            work.append((thm, todo))
    return work


def main(cfg: SearchConfig) -> int:
    """The `leanstar search` command."""
    try:
        summary = run_search(cfg)
    except USER_ERRORS as e:
        print(f"leanstar search: {e}", file=sys.stderr)
        return 2
    print(describe(summary))
    return 0


__all__ = ["SearchSession", "SearchSummary", "describe", "main", "run_search"]
