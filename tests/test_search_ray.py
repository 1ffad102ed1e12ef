"""The Ray runner on a local 2-CPU cluster writes what the local runner writes."""

from __future__ import annotations

import pytest

from leanstar.jsonl import read_records
from leanstar.records import Trajectory
from leanstar.search.config import SearchConfig
from leanstar.search.runner import run_search
from tests.fakes.prover import steered_replay_node

ray = pytest.importorskip("ray")


def _essence(t: Trajectory):
    """Everything but timings."""
    steps = tuple(
        (s.depth, s.state, s.thought, s.tactic, s.outcome, s.state_after, s.message, s.logprob)
        for s in t.steps
    )
    return (
        t.theorem,
        t.attempt,
        t.outcome,
        t.checked_by,
        t.strategy,
        t.stop_reason,
        t.proof,
        t.verdict,
        steps,
    )


@pytest.fixture(scope="module")
def local_cluster():
    from leanstar.search.distributed import _pythonpath

    ray.init(
        num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}}
    )
    yield
    ray.shutdown()


@pytest.mark.parametrize(
    "strategy", ["sampling", pytest.param("best_first", marks=pytest.mark.slow)]
)
def test_ray_matches_local(tmp_path, local_cluster, strategy):
    common = dict(strategy=strategy, attempts=2, max_steps=6, candidates=3, concurrent_theorems=4)
    local = SearchConfig(run_dir=str(tmp_path / "local"), **common)
    generator, env = steered_replay_node()
    local_summary = run_search(local, generator=generator, env=env, progress=False)
    remote = SearchConfig(run_dir=str(tmp_path / "ray"), ray=True, ray_workers=2, **common)
    ray_summary = run_search(remote, node_factory=steered_replay_node, progress=False)

    def read(cfg):
        return sorted(map(_essence, read_records(f"{cfg.run_dir}/trajectories.jsonl", Trajectory)))

    assert read(local) == read(remote) and len(read(local)) == 2 * local_summary.theorems
    assert ray_summary.outcomes == local_summary.outcomes
    assert ray_summary.theorems_proved == local_summary.theorems_proved > 0
    assert ray_summary.complete and ray_summary.session["sampler_calls"] > 0
    again = run_search(remote, node_factory=steered_replay_node, progress=False)
    assert again.session["attempts"] == 0  # resumes like the local runner
