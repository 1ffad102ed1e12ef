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
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leanstar.generation.base import Generator
from leanstar.jsonl import JsonlWriter, write_json_atomic
from leanstar.lean.env import ProofEnv
from leanstar.records import Theorem, Trajectory
from leanstar.rundir import RunDir
from leanstar.search import store
from leanstar.search.backends import build_env, build_generator
from leanstar.search.config import SearchConfig
from leanstar.search.meter import Usage
from leanstar.search.node import SearchNode
from leanstar.search.progress import SearchProgress, notice
from leanstar.search.theorems import load_search_theorems

NodeFactory = Callable[[], tuple[Generator, ProofEnv]]
REFRESH_S = 0.5


@dataclass(frozen=True)
class SearchSummary:
    """Counts over everything in the run directory, and what this session did."""

    run_dir: str
    strategy: str
    checked_by: str
    model: str
    theorems: int  # theorems searched (after split, limit and the startable filter)
    attempts_per_theorem: int
    trajectories: int  # records in trajectories.jsonl
    outcomes: dict[str, int]
    theorems_proved: int
    complete: bool  # every (theorem, attempt) is written
    skipped: dict[str, str] = field(default_factory=dict)  # theorem -> why it was not searched
    session: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
        round: int = 0,  # noqa: A002 - Trajectory.round
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
    async def _run(self, cfg, theorems, round, progress) -> SearchSummary:  # noqa: A002
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
                run = _Bookkeeper(cfg, rd, theorems, work, written, writer, progress)
                if not work:
                    return run.finish(env.label, skipped, Usage())
                node = SearchNode(cfg, self._generator(cfg), env, round)
                try:
                    await run.drive(node.prove_all(work, run.emit), node.usage)
                finally:
                    await node.close()
                return run.finish(env.label, skipped, node.usage())
        finally:
            rd.unlock()

    async def _run_ray(self, cfg, rd, theorems, written, writer, round, progress):  # noqa: A002
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
            run = _Bookkeeper(cfg, rd, theorems, work, written, writer, progress)
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
    round: int = 0,  # noqa: A002
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


class _Bookkeeper:
    """Writes each finished attempt, shows progress, and sums up."""

    def __init__(self, cfg, rd, theorems, work, written, writer, progress) -> None:
        self.cfg, self.rd, self.theorems = cfg, rd, theorems
        self.written, self.writer = written, writer
        self.todo = sum(len(a) for _, a in work)
        self.new = self.steps = 0
        self.started = time.perf_counter()
        self.progress = SearchProgress(self.todo, len(work), progress)
        for thm, attempts in work:
            self.progress.expect(thm.name, len(attempts))
        done = len(theorems) * cfg.attempts - self.todo
        if done:
            notice(f"resuming: {done} attempts already in {rd / store.TRAJECTORIES}")

    def emit(self, t: Trajectory) -> None:
        self.writer.write(t)
        self.written.add(t.theorem, t.attempt, t.outcome.value, t.checked_by)
        self.new += 1
        self.steps += len(t.steps)
        self.progress.finished(t)

    async def drive(self, work, usage: Callable[[], Any]) -> None:
        """Run `work` while refreshing the progress line from `usage()`."""
        task = asyncio.ensure_future(work)
        with self.progress:
            while not task.done():
                await asyncio.wait([task], timeout=REFRESH_S)
                shown = usage()
                self.progress.show(await shown if asyncio.iscoroutine(shown) else shown)
            await task

    def finish(self, label: str, skipped: dict[str, str], usage: Usage) -> SearchSummary:
        cfg, w = self.cfg, self.written
        names = {t.name for t in self.theorems}
        wall = time.perf_counter() - self.started
        complete = all((t.name, a) in w.keys for t in self.theorems for a in range(cfg.attempts))
        summary = SearchSummary(
            run_dir=str(self.rd.path),
            strategy=cfg.strategy,
            checked_by=label,
            model=cfg.generator.model,
            theorems=len(self.theorems),
            attempts_per_theorem=cfg.attempts,
            trajectories=len(w.keys),
            outcomes=dict(w.outcomes),
            theorems_proved=len(w.proved & names),
            complete=complete,
            skipped=skipped,
            session={
                "attempts": self.new,
                "steps": self.steps,
                "wall_s": round(wall, 3),
                "steps_per_s": round(self.steps / wall, 2) if wall > 0 else 0.0,
                **usage.to_dict(),
            },
        )
        write_json_atomic(self.rd / store.SUMMARY, summary.to_dict())
        if complete:
            self.rd.mark_done("search", proved=summary.theorems_proved, theorems=len(names))
        return summary


def main(cfg: SearchConfig) -> int:
    """The `leanstar search` command."""
    summary = run_search(cfg)
    print(describe(summary))
    return 0


def describe(s: SearchSummary) -> str:
    label = f" [{s.checked_by}]" if "not checked by Lean" in s.checked_by else ""
    rate = s.theorems_proved / s.theorems if s.theorems else 0.0
    outcomes = ", ".join(f"{v} {k}" for k, v in s.outcomes.items() if v)
    u = s.session
    lines = [
        f"{s.strategy} search, {s.theorems} theorems x {s.attempts_per_theorem} attempts, "
        f"checked by {s.checked_by}, model {s.model}",
        f"proved {s.theorems_proved}/{s.theorems} theorems ({100 * rate:.1f}%){label}; "
        f"attempts: {outcomes or 'none'}",
    ]
    if s.skipped:
        lines.append(f"skipped {len(s.skipped)} theorems (see summary.json)")
    if u.get("attempts"):
        lines.append(
            f"this session: {u['attempts']} attempts, {u['steps']} steps in {u['wall_s']:.1f} s "
            f"({u['steps_per_s']:.1f} steps/s); sampler busy {100 * u['sampler_utilisation']:.0f}%"
            f" (mean batch {u['mean_batch_prompts']:.1f} prompts), Lean busy "
            f"{100 * u['lean_utilisation']:.0f}%, both idle {100 * u['idle_share']:.1f}%"
        )
    if not s.complete:
        lines.append("incomplete: run the same command again to resume")
    lines.append(f"trajectories: {s.run_dir}/{store.TRAJECTORIES}")
    return "\n".join(lines)
