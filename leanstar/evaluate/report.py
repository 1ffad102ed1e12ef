"""Evaluation reports: pass@k tables (Markdown + JSON) and plots, always labelled.

Every number says what checked the proofs. A report built from trajectories with no
`checked_by`, or with several different checkers mixed, is refused: such a number could not
be read honestly. Replay-checked numbers carry "replay (not checked by Lean)" beside each
figure, not only in a header that might be cut off when pasted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leanstar.evaluate.passk import ProblemResult, pass_at_k_table
from leanstar.records import REPLAY_LABEL, Trajectory

# Facts from the Lean-STaR paper (Lin et al. 2024, DESIGN.md), miniF2F-test, sampling search.
PAPER_ROWS = (
    ("Lean-STaR, InternLM2-Math-plus-7B", 64, 0.463),
    ("Lean-STaR, InternLM2-Math-base-7B, after 2 rounds", 32, 0.348),
)


class UnlabelledResults(ValueError):
    """Trajectories whose checker is missing or mixed: no honest number can be printed."""


@dataclass
class EvalReport:
    checked_by: str
    model: str
    theorems: str
    strategy: str
    problems: list[ProblemResult]
    pass_at_k: dict[int, float]
    extra: dict = field(default_factory=dict)

    @property
    def replay(self) -> bool:
        return self.checked_by == REPLAY_LABEL

    def figure(self, value: float) -> str:
        """A pass rate as it may be shown: with its label when Lean did not check it."""
        text = f"{100 * value:.1f}%"
        return f"{text} [{REPLAY_LABEL}]" if self.replay else text

    def to_json(self) -> dict:
        return {
            "checked_by": self.checked_by,
            "checked_by_lean": not self.replay,
            "model": self.model,
            "theorems": self.theorems,
            "strategy": self.strategy,
            "num_problems": len(self.problems),
            "num_proved": sum(p.proved > 0 for p in self.problems),
            "pass_at_k": {str(k): v for k, v in self.pass_at_k.items()},
            "problems": [asdict(p) for p in self.problems],
            "paper": [{"row": r, "k": k, "pass_at_k": v} for r, k, v in PAPER_ROWS],
            **self.extra,
        }


def problem_results(trajectories: Iterable[Trajectory]) -> tuple[list[ProblemResult], str]:
    """Per-theorem attempts and successes, and the one label of what checked them."""
    attempts: dict[str, int] = defaultdict(int)
    proved: dict[str, int] = defaultdict(int)
    splits: dict[str, str] = {}
    labels: set[str] = set()
    for t in trajectories:
        attempts[t.theorem] += 1
        proved[t.theorem] += t.proved
        splits[t.theorem] = t.split
        labels.add(t.checked_by)
    if not attempts:
        raise UnlabelledResults("no trajectories to report on")
    if len(labels) != 1 or not next(iter(labels)):
        raise UnlabelledResults(
            f"trajectories checked by {sorted(labels)}: refusing to mix or drop labels"
        )
    results = [ProblemResult(n, attempts[n], proved[n], splits[n]) for n in sorted(attempts)]
    return results, labels.pop()


def build_report(
    trajectories: Iterable[Trajectory], *, model: str, theorems: str, strategy: str
) -> EvalReport:
    """pass@k for every k up to the smallest number of attempts per problem."""
    problems, label = problem_results(trajectories)
    return EvalReport(label, model, theorems, strategy, problems, pass_at_k_table(problems))


def markdown(report: EvalReport, ks: Iterable[int] = (1, 8, 32, 64)) -> str:
    """The report as Markdown; the table shows `ks` (and the largest k) of the full pass@k curve."""
    lines = [
        "# leanstar evaluation",
        "",
        f"- proofs checked by: **{report.checked_by}**",
        f"- model: `{report.model}`",
        f"- theorems: `{report.theorems}` ({len(report.problems)} problems), strategy: {report.strategy}",
        "",
    ]
    if report.replay:
        lines += [
            f"> Every figure below is **{REPLAY_LABEL}**: the replay environment only retraces",
            "> recorded LeanDojo states. These numbers are not comparable with Lean-checked results.",
            "",
        ]
    shown = [k for k in report.pass_at_k if k in set(ks) or k == max(report.pass_at_k)]
    lines += ["| k | pass@k |", "| ---: | ---: |"]
    lines += [f"| {k} | {report.figure(report.pass_at_k[k])} |" for k in shown]
    lines += ["", "## Beside the paper (miniF2F-test, Lean-checked, Lin et al. 2024)", ""]
    lines += ["| system | k | pass@k |", "| --- | ---: | ---: |"]
    lines += [f"| {row} | {k} | {100 * v:.1f}% |" for row, k, v in PAPER_ROWS]
    ours = report.pass_at_k
    for _, k, _ in PAPER_ROWS:
        if k in ours:
            lines.append(f"| **this run** (`{report.model}`) | {k} | {report.figure(ours[k])} |")
    lines += ["", "## Problems proved", ""]
    proved = [p for p in report.problems if p.proved]
    lines += [f"- `{p.name}`: {p.proved}/{p.attempts} attempts" for p in proved] or ["(none)"]
    return "\n".join(lines) + "\n"


def plot_pass_at_k(report: EvalReport, path: Path) -> Path | None:
    """pass@k against k (log-scaled k), titled with the checker; None if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ks = list(report.pass_at_k)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [100 * report.pass_at_k[k] for k in ks], marker="o", label=report.model)
    for row, k, v in PAPER_ROWS:
        ax.scatter([k], [100 * v], marker="x", label=f"paper: {row}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(f"pass@k, checked by: {report.checked_by}", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_rounds(rates: dict[int, float], label: str, path: Path) -> Path | None:
    """Pass rate on the training theorems against expert-iteration round."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rounds = sorted(rates)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(rounds, [100 * rates[r] for r in rounds], marker="o")
    ax.set_xticks(rounds)
    ax.set_xlabel("expert-iteration round")
    ax.set_ylabel("theorems proved (%)")
    ax.set_title(f"pass rate per round, checked by: {label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
