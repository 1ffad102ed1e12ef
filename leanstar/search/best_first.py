"""Best-first search (ReProver / BFS-Prover style): expand the most likely open state first.

A node is a proof state; its score is the sum of its path's step scores (log-probabilities, see
`candidates`). Expanding a node samples `candidates` completions in one request, runs their
distinct tactics in Lean concurrently, and adds every new state as an open child. A state whose
goals an existing node already has is a duplicate: recorded, never added. The search ends at
the first proof the whole-proof check accepts, when no open node is left, after
`max_expansions` expansions, or when the theorem's time budget runs out. Nodes at depth
`max_steps` are kept but not expanded: a proof through them would be longer than allowed.

The trajectory records every candidate tried, expansion by expansion, with `depth` = the depth
of the node it was tried from; within an expansion, the steps that did not advance come first,
then those that added a state, then those that closed the goals (a proved search records its
closing step last). The tree can be rebuilt because node goals are unique (see
`context.proof_path`).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import time
from dataclasses import dataclass

from leanstar.lean.env import EnvFailure, ProofFinished, ProofState
from leanstar.lean.replay import normalize_tactic
from leanstar.records import Theorem, Trajectory, TrajectoryOutcome, Verdict
from leanstar.search.candidates import Candidate, Garbled
from leanstar.search.context import Recorder, SearchContext

STRATEGY = "best_first"


class NodeStatus(enum.Enum):
    OPEN = "open"  # waiting in the frontier
    EXPANDED = "expanded"  # its candidates were sampled and run
    TOO_DEEP = "too_deep"  # at max_steps: kept for deduplication, never expanded


@dataclass(eq=False)
class Node:
    """Invariants: `state.goals` is unique among one search's nodes; `score` is the parent's
    score plus the score of the step that reached this node (0 at the root); `depth` is the
    number of tactics from the root (`len(state.tactics)` for every backend)."""

    state: ProofState
    score: float
    depth: int
    status: NodeStatus = NodeStatus.OPEN


class _Search:
    def __init__(self, ctx: SearchContext, theorem: Theorem, root: ProofState, attempt: int):
        self.ctx, self.cfg = ctx, ctx.cfg
        self.rec = Recorder(ctx, theorem, attempt, STRATEGY)
        self.nodes: dict[str, Node] = {}
        self.frontier: list[tuple[float, int, Node]] = []
        self._order = itertools.count()
        self.env_failures = 0
        self.rejected: tuple[tuple[str, ...], Verdict] | None = None
        self._add(root, 0.0, 0)

    def _add(self, state: ProofState, score: float, depth: int) -> None:
        node = Node(state, score, depth)
        self.nodes[state.goals] = node
        if depth >= self.cfg.max_steps:
            node.status = NodeStatus.TOO_DEEP
        else:
            heapq.heappush(self.frontier, (-score, next(self._order), node))

    async def run(self, deadline: float) -> Trajectory:
        cfg = self.cfg
        for _ in range(cfg.max_expansions):
            if not self.frontier:
                return self._ended("no open state left")
            if time.perf_counter() >= deadline:
                return self._ended(f"time budget of {cfg.theorem_time_s:g} s spent")
            _, _, node = heapq.heappop(self.frontier)
            node.status = NodeStatus.EXPANDED
            proved = await self._expand(node)
            if proved is not None:
                return proved
        return self._ended(f"{cfg.max_expansions} expansions without a proof")

    async def _expand(self, node: Node) -> Trajectory | None:
        goals = node.state.goals
        cands, sample_s = await self.ctx.propose(goals, self.cfg.candidates)
        distinct: dict[str, Candidate] = {}
        for c in cands:
            if isinstance(c, Garbled):
                self.rec.garbled(node.depth, goals, c, sample_s)
            else:
                distinct.setdefault(normalize_tactic(c.tactic), c)
        answers = await asyncio.gather(
            *(self.ctx.run_tactic(node.state, c.tactic) for c in distinct.values())
        )
        runs = dict(zip(distinct, answers))
        finished, children = [], []
        for c in cands:
            if isinstance(c, Garbled):
                continue
            key = normalize_tactic(c.tactic)
            result, lean_s = runs[key]
            if distinct[key] is not c:
                note = "same tactic as an earlier candidate of this expansion; not rerun"
                self.rec.tried(node.depth, goals, c, result, sample_s, 0.0, note)
            elif isinstance(result, ProofFinished):
                finished.append((c, result, lean_s))
            elif isinstance(result, ProofState) and result.goals not in self.nodes:
                self._add(result, node.score + c.score, node.depth + 1)
                children.append((c, result, lean_s))
            else:
                self._not_taken(node, c, result, sample_s, lean_s)
        for c, result, lean_s in children:  # what advanced is recorded after what did not
            self.rec.tried(node.depth, goals, c, result, sample_s, lean_s)
        return await self._judge_finished(node, finished, sample_s)

    def _not_taken(self, node: Node, c: Candidate, result, sample_s: float, lean_s: float) -> None:
        note = None
        if isinstance(result, ProofState):  # its goals are already a node's
            note = "reached a state this search already holds; not added"
        self.env_failures += isinstance(result, EnvFailure)
        self.rec.tried(node.depth, node.state.goals, c, result, sample_s, lean_s, note)

    async def _judge_finished(self, node: Node, finished, sample_s: float) -> Trajectory | None:
        """Check each candidate that closed the goals; the first accepted proof ends the
        search and is recorded last."""
        for i, (c, result, lean_s) in enumerate(finished):
            verdict = await self.ctx.verify(self.rec.theorem, result.tactics)
            if verdict.ok:
                for later in finished[i + 1 :]:  # ran, but left unjudged
                    self.rec.tried(
                        node.depth, node.state.goals, later[0], later[1], sample_s, later[2]
                    )
                self.rec.tried(node.depth, node.state.goals, c, result, sample_s, lean_s)
                return self.rec.finish(TrajectoryOutcome.PROVED, "proved", result.tactics, verdict)
            self.rec.tried(node.depth, node.state.goals, c, result, sample_s, lean_s)
            self.rejected = (result.tactics, verdict)
        return None

    def _ended(self, reason: str) -> Trajectory:
        if self.rejected is not None:
            tactics, verdict = self.rejected
            why = f"{reason}; the whole-proof check refused a proof: {verdict.reason}"
            return self.rec.finish(TrajectoryOutcome.REJECTED, why, tactics, verdict)
        if self.env_failures:
            why = f"{reason}; {self.env_failures} environment failures"
            return self.rec.finish(TrajectoryOutcome.ERROR, why)
        return self.rec.finish(TrajectoryOutcome.FAILED, reason)


async def best_first_attempt(
    ctx: SearchContext, theorem: Theorem, root: ProofState, attempt: int, deadline: float
) -> Trajectory:
    return await _Search(ctx, theorem, root, attempt).run(deadline)
