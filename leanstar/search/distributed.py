"""Spreading a search over a Ray cluster: one search node per worker, results written by the
driver exactly as on one machine.

Each worker is a Ray actor holding its own sampler and environment (built inside the worker by
the node factory, by default from the config) and a `SearchNode`. The driver hands theorems out
one at a time, keeping `concurrent_theorems` in flight on each worker, so a slow theorem never
idles a worker; each theorem comes back as its finished trajectories, which the driver writes
to the run directory. Interrupting the driver loses only the theorems in flight on workers;
the same command resumes.

Ray is imported only here, and only when `ray: true`.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import deque
from pathlib import Path

import leanstar
from leanstar.records import Theorem, Trajectory
from leanstar.search.backends import build_node_parts
from leanstar.search.config import SearchConfig
from leanstar.search.meter import Usage
from leanstar.search.node import Emit, SearchNode


class _Worker:
    """A search node inside a Ray actor (async methods run on the actor's event loop)."""

    def __init__(self, cfg: SearchConfig, factory, round: int) -> None:
        self.generator, self.env = factory()
        self.node = SearchNode(cfg, self.generator, self.env, round)

    async def label(self) -> str:
        return self.env.label

    async def knows(self, names: list[str]) -> list[str] | None:
        knows = getattr(self.env, "knows", None)
        return None if knows is None else [n for n in names if knows(n)]

    async def prove(self, theorem: Theorem, attempts: list[int]) -> list[Trajectory]:
        out: list[Trajectory] = []
        await self.node.prove(theorem, attempts, out.append)
        return out

    async def usage(self) -> Usage:
        return self.node.usage()

    async def close(self) -> None:
        await self.node.close()
        await self.env.close()
        self.generator.close()


class RayCluster:
    def __init__(self, cfg: SearchConfig, node_factory=None, round: int = 0) -> None:
        self.cfg, self.round = cfg, round
        self.factory = node_factory or functools.partial(build_node_parts, cfg)
        self.workers: list = []
        self._started_ray = False

    async def __aenter__(self) -> RayCluster:
        try:
            import ray
        except ImportError as e:
            raise ImportError("ray: true needs Ray (pip install 'leanstar[ray]')") from e
        self._ray = ray
        if not ray.is_initialized():
            address = self.cfg.ray_address or os.environ.get("RAY_ADDRESS") or None
            env = None if address else {"env_vars": {"PYTHONPATH": _pythonpath()}}
            ray.init(address=address, runtime_env=env, include_dashboard=False)
            self._started_ray = True
        count, gpus = self._plan()
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
        self.workers = [actor.remote(self.cfg, self.factory, self.round) for _ in range(count)]
        return self

    def _plan(self) -> tuple[int, float]:
        """(workers, GPUs per worker) from the config and the cluster's resources."""
        cluster_gpus = self._ray.cluster_resources().get("GPU", 0)
        gpus = self.cfg.ray_gpus_per_worker
        if gpus < 0:
            gpus = 1.0 if cluster_gpus >= 1 else 0.0
        count = self.cfg.ray_workers or (int(cluster_gpus // gpus) if gpus > 0 else 1)
        return max(1, count), gpus

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            await asyncio.gather(*(w.close.remote() for w in self.workers))
        for w in self.workers:
            self._ray.kill(w)
        if self._started_ray:
            self._ray.shutdown()

    async def label(self) -> str:
        labels = set(await asyncio.gather(*(w.label.remote() for w in self.workers)))
        if len(labels) != 1:
            raise RuntimeError(f"Ray workers check proofs differently: {sorted(labels)}")
        return labels.pop()

    async def knows_fn(self, theorems: list[Theorem]):
        known = await self.workers[0].knows.remote([t.name for t in theorems])
        return None if known is None else set(known).__contains__

    async def prove_all(self, work: list[tuple[Theorem, list[int]]], emit: Emit) -> None:
        queue = deque(work)
        inflight: dict[asyncio.Future, int] = {}

        def submit(i: int) -> None:
            theorem, attempts = queue.popleft()
            ref = self.workers[i].prove.remote(theorem, attempts)
            inflight[asyncio.wrap_future(ref.future())] = i

        for i in range(len(self.workers)):
            for _ in range(max(1, self.cfg.concurrent_theorems)):
                if queue:
                    submit(i)
        while inflight:
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                i = inflight.pop(fut)
                for trajectory in fut.result():
                    emit(trajectory)
                if queue:
                    submit(i)

    async def usage(self) -> Usage:
        """Summed over workers (so utilisations are averages over them)."""
        parts = await asyncio.gather(*(w.usage.remote() for w in self.workers))
        return functools.reduce(Usage.add, parts, Usage())

    usage_so_far = usage


def _pythonpath() -> str:
    """Workers of a cluster we start import the same leanstar as this driver."""
    root = str(Path(leanstar.__file__).resolve().parents[1])
    rest = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{rest}" if rest else root
