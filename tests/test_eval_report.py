import pytest

from leanstar.evaluate.report import UnlabelledResults, build_report, markdown, plot_pass_at_k
from leanstar.records import REPLAY_LABEL, Trajectory, TrajectoryOutcome


def _traj(name, attempt, proved, label=REPLAY_LABEL):
    outcome = TrajectoryOutcome.PROVED if proved else TrajectoryOutcome.FAILED
    return Trajectory(name, attempt, outcome, (), label, split="test")


def _run(label=REPLAY_LABEL):
    return [_traj("a", i, i == 0, label) for i in range(4)] + [
        _traj("b", i, False, label) for i in range(4)
    ]


def test_report_numbers_and_labels(tmp_path):
    report = build_report(_run(), model="tiny", theorems="bundled:x", strategy="sampling")
    assert report.pass_at_k[1] == pytest.approx(0.125)  # (1/4 + 0) / 2
    assert report.pass_at_k[4] == pytest.approx(0.5)
    text = markdown(report, ks=[1])
    assert f"| 1 | 12.5% [{REPLAY_LABEL}] |" in text
    assert f"| 4 | 50.0% [{REPLAY_LABEL}] |" in text  # the largest k is always shown
    assert "not comparable with Lean-checked results" in text
    data = report.to_json()
    assert data["checked_by"] == REPLAY_LABEL and data["checked_by_lean"] is False
    assert data["num_proved"] == 1
    assert plot_pass_at_k(report, tmp_path / "p.png").stat().st_size > 1000


def test_lean_checked_numbers_are_plain():
    report = build_report(_run("Lean REPL v4.24.0"), model="m", theorems="t", strategy="sampling")
    assert "| 1 | 12.5% |" in markdown(report)
    assert "not comparable" not in markdown(report)


def test_mixed_or_missing_labels_are_refused():
    with pytest.raises(UnlabelledResults, match="refusing"):
        build_report(
            _run() + [_traj("c", 0, True, "Lean REPL v4.24.0")],
            model="m",
            theorems="t",
            strategy="s",
        )
    with pytest.raises(UnlabelledResults):
        build_report([_traj("c", 0, True, "")], model="m", theorems="t", strategy="s")
    with pytest.raises(UnlabelledResults, match="no trajectories"):
        build_report([], model="m", theorems="t", strategy="s")
