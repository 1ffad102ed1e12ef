from leanstar.records import REPLAY_LABEL, Step, StepOutcome, Trajectory, TrajectoryOutcome
from leanstar.train.collect import collect

S0, S1 = "⊢ a = a ∧ b = b", "case left\n⊢ a = a"


def _traj(attempt, tactics, outcome=TrajectoryOutcome.PROVED, theorem="t"):
    steps = [Step(0, S0, "Split first.", "exact foo", StepOutcome.LEAN_ERROR, message="unknown")]
    steps.append(Step(0, S0, "Split the conjunction.", tactics[0], StepOutcome.PROOF_STATE, S1))
    steps.append(
        Step(1, S1, "Both are reflexivity.", tactics[1], StepOutcome.PROOF_FINISHED, "no goals")
    )
    return Trajectory(theorem, attempt, outcome, tuple(steps), REPLAY_LABEL, model="m")


def test_keeps_verified_proofs_without_failed_steps():
    got = collect([_traj(0, ["constructor", "all_goals rfl"])], round=2)
    assert [(s.state, s.tactic, s.round, s.source) for s in got.steps] == [
        (S0, "constructor", 2, "expert_iteration"),
        (S1, "all_goals rfl", 2, "expert_iteration"),
    ]
    assert got.steps[0].thought == "Split the conjunction."
    assert got.proofs_kept == 1 and got.theorems_proved == {"t"}


def test_unverified_trajectories_give_nothing():
    rejected = _traj(0, ["constructor", "all_goals rfl"], outcome=TrajectoryOutcome.REJECTED)
    assert collect([rejected], round=1).steps == []


def test_distinct_proofs_per_theorem_and_dedup():
    trajs = [
        _traj(2, ["constructor", "all_goals  rfl"]),  # same as attempt 0 up to whitespace
        _traj(0, ["constructor", "all_goals rfl"]),
        _traj(1, ["refine ⟨?_, ?_⟩", "all_goals rfl"]),
    ]
    one = collect(trajs, round=1, max_proofs=1)
    assert one.proofs_kept == 1 and [s.tactic for s in one.steps] == [
        "constructor",
        "all_goals rfl",
    ]
    two = collect(trajs, round=1, max_proofs=5)
    assert two.proofs_kept == 2
    assert [s.tactic for s in two.steps] == ["constructor", "all_goals rfl", "refine ⟨?_, ?_⟩"]


def test_drop_multiline():
    got = collect([_traj(0, ["constructor", "· rfl\n· rfl"])], round=1, drop_multiline=True)
    assert [s.tactic for s in got.steps] == ["constructor"] and got.multiline_dropped == 1


def test_best_first_branches_are_not_training_data():
    steps = (
        Step(0, S0, "Try splitting.", "constructor", StepOutcome.PROOF_STATE, S1),
        Step(0, S0, "Or simplify.", "simp only []", StepOutcome.PROOF_STATE, "⊢ b = b"),  # a branch
        Step(1, S1, "Reflexivity.", "all_goals rfl", StepOutcome.PROOF_FINISHED, "no goals"),
    )
    traj = Trajectory("t", 0, TrajectoryOutcome.PROVED, steps, REPLAY_LABEL, strategy="best_first")
    assert [s.tactic for s in collect([traj], round=1).steps] == ["constructor", "all_goals rfl"]
