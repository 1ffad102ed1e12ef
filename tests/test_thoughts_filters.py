"""Each quality filter, on its own, and the order in which they name a rejection."""

import pytest

from leanstar.prompting import teacher_answer
from leanstar.thoughts.filters import (
    Accepted,
    Deduper,
    FilterSettings,
    Reason,
    Rejected,
    contains_phrase,
    hindsight_names,
    judge,
)

STATE = "x y : ℝ≥0∞\nz : ℝ\nhz : 0 < z\n⊢ x ≤ y ^ (1 / z) ↔ x ^ z ≤ y"
TACTIC = "nth_rw 1 [← rpow_one x]"
GOOD = "The left side has x alone; writing it as a power with exponent one lines both sides up."


def verdict(thought, tactic=TACTIC, state=STATE, **settings):
    return judge(teacher_answer(thought, tactic), state, TACTIC, FilterSettings(**settings))


def test_a_good_answer_is_accepted():
    assert verdict(GOOD) == Accepted(GOOD)


@pytest.mark.parametrize(
    ("thought", "tactic", "reason"),
    [
        (GOOD, "nth_rw 2 [← rpow_one x]", Reason.TACTIC_MISMATCH),
        ("", TACTIC, Reason.EMPTY_THOUGHT),
        ("x" * 1201, TACTIC, Reason.OVERLONG_THOUGHT),
        ("Just do nth_rw 1 [← rpow_one x] here.", TACTIC, Reason.REVEALS_TACTIC),
        ("Use rpow_one to rewrite x.", TACTIC, Reason.REVEALS_LEMMA),
    ],
)
def test_each_reason(thought, tactic, reason):
    result = verdict(thought, tactic)
    assert isinstance(result, Rejected) and result.reason is reason, result


def test_unparsable_keeps_the_parser_reason():
    result = judge("no sections at all", STATE, TACTIC, FilterSettings())
    assert result == Rejected(Reason.UNPARSABLE, "does not start with THOUGHT:")


def test_tactic_whitespace_differences_are_not_a_mismatch():
    assert verdict(GOOD, tactic="nth_rw  1 [← rpow_one   x]") == Accepted(GOOD)
    multi = "constructor\n· simp\n· ring"
    text = teacher_answer(GOOD, "constructor\n  · simp\n  · ring")
    assert isinstance(judge(text, STATE, multi, FilterSettings()), Accepted)


def test_first_failing_check_names_the_rejection():
    # Overlong and revealing: overlong comes first.
    long_reveal = "nth_rw 1 [← rpow_one x] " + "y" * 1300
    assert verdict(long_reveal).reason is Reason.OVERLONG_THOUGHT


def test_limits_are_settings():
    assert isinstance(verdict("x" * 50, max_thought_chars=40), Rejected)
    assert verdict("Use rpow_one to rewrite x.", reject_lemma_names=False) == Accepted(
        "Use rpow_one to rewrite x."
    )


def test_tactic_is_matched_as_whole_words():
    assert contains_phrase("we can simp the goal", "simp")
    assert not contains_phrase("simplify the goal", "simp")
    assert not contains_phrase("by reflexivity", "rfl")
    assert not contains_phrase("see Nat.simp", "simp") and contains_phrase("then simp.", "simp")
    assert contains_phrase("rw [h]", "rw [h]") and not contains_phrase("rw [h]x", "rw [h]")
    assert contains_phrase("try `exact  h.le` now", "exact h.le")
    assert not contains_phrase("anything", "")


def test_hindsight_names_are_lemmas_the_state_does_not_show():
    state = (
        "G : Type\ninst : Group G\nf : G → G\nhf : IsGroupHom f\nh : f a = f b\n⊢ f (a⁻¹ * b) = 1"
    )
    tactic = "rwa [← hf.map_inv, ← hf.map_mul, mul_left_inv, Nat.succ_le_iff] at this"
    names = hindsight_names(state, tactic)
    # hf.map_inv is dot notation on a hypothesis; its last part is still a lemma name.
    assert names == ["map_inv", "map_mul", "mul_left_inv", "Nat.succ_le_iff", "succ_le_iff"]
    assert hindsight_names("h_pos : 0 < x\n⊢ x ≠ 0", "exact h_pos.ne'") == []


def test_duplicates_are_case_and_space_insensitive():
    dedupe = Deduper(["Look at the goal."])
    assert dedupe.check("look  at the GOAL.") == Rejected(
        Reason.DUPLICATE, "the same thought was already accepted"
    )
    assert dedupe.check("Something new.") is None
    dedupe.add("Something new.")
    assert dedupe.check("something new.") is not None
