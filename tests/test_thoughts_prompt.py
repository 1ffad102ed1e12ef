"""The teacher prompt, its few-shot example and the strict parser of teacher answers."""

import pytest

from leanstar.data import load_leandojo
from leanstar.prompting import (
    TEACHER_EXAMPLE_THEOREM,
    TEACHER_PROMPT_VERSION,
    TEACHER_SYSTEM,
    TeacherAnswer,
    Unparsable,
    chat_to_prompt,
    parse_teacher_answer,
    teacher_answer,
    teacher_example,
    teacher_messages,
    teacher_prompt,
    teacher_user_message,
)
from leanstar.thoughts.filters import FilterSettings, check_answer

EXAMPLE_STATE = "r p : ℝ≥0\nh : p ≠ 0\n⊢ r ≤ p⁻¹ ↔ r * p ≤ 1"
EXAMPLE_TACTIC = "rw [← mul_le_mul_left (pos_iff_ne_zero.2 h), mul_inv_cancel h, mul_comm]"


def test_version_names_the_teacher_prompt():
    assert TEACHER_PROMPT_VERSION == "teacher-v1"


def test_few_shot_example_is_a_real_bundled_record():
    ex = teacher_example()
    steps = {
        (s.state_before, s.tactic)
        for thm in load_leandojo("bundled:leandojo-benchmark4-sample.json")
        if thm.full_name == TEACHER_EXAMPLE_THEOREM
        for s in thm.steps
    }
    assert (ex.state, ex.tactic) in steps
    # Pinned: a change to the bundled record changes the prompt and needs a new version.
    assert (ex.state, ex.tactic) == (EXAMPLE_STATE, EXAMPLE_TACTIC)


def test_few_shot_thought_follows_its_own_rules():
    """The example must pass every filter we apply to the teacher, or it teaches the wrong
    thing: no tactic, no hindsight lemma names, short."""
    ex = teacher_example()
    verdict = check_answer(
        TeacherAnswer(ex.thought, ex.tactic), ex.state, ex.tactic, FilterSettings()
    )
    assert verdict.__class__.__name__ == "Accepted", verdict
    assert len(ex.thought) < 400 and ex.thought.count(". ") + 1 <= 3


def test_user_message_and_answer_exact():
    assert teacher_user_message("⊢ True\n", " trivial ") == (
        "Proof state:\n```lean\n⊢ True\n```\nNext tactic:\n```lean\ntrivial\n```"
    )
    assert teacher_answer(" It is true. ", "trivial") == (
        "THOUGHT:\nIt is true.\nTACTIC:\n```lean\ntrivial\n```"
    )


def test_messages_are_system_example_then_pair():
    ex = teacher_example()
    messages = teacher_messages("⊢ True", "trivial")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == TEACHER_SYSTEM
    assert messages[1]["content"] == teacher_user_message(ex.state, ex.tactic)
    assert messages[2]["content"] == teacher_answer(ex.thought, ex.tactic)
    assert messages[3]["content"] == teacher_user_message("⊢ True", "trivial")
    for rule in ("Start from the goal", "about two sentences", "Never write the tactic"):
        assert rule in TEACHER_SYSTEM


def test_plain_prompt_without_chat_template():
    prompt = teacher_prompt("⊢ True", "trivial")
    assert prompt.startswith("System:\nYou are an expert in Lean 4")
    assert prompt.endswith(
        "User:\nProof state:\n```lean\n⊢ True\n```\nNext tactic:\n```lean\ntrivial\n```"
        "\n\nAssistant:\n"
    )


def test_prompt_goes_through_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = teacher_messages("⊢ True", "trivial")
    prompt = chat_to_prompt(messages, tok)
    assert prompt.startswith("<|im_start|>system\n" + TEACHER_SYSTEM + "<|im_end|>\n")
    assert prompt.endswith(
        "<|im_start|>user\n" + messages[-1]["content"] + "<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "tactic",
    ["simp", "rw [h]\nsimp", "match eq₂ : s.deleteMin le, eq with\n| some (a, tl), rfl => exact h"],
)
def test_answer_round_trips(tactic):
    text = teacher_answer("Reduce the goal.\nThen close it.", tactic)
    assert parse_teacher_answer(text) == TeacherAnswer("Reduce the goal.\nThen close it.", tactic)
    assert parse_teacher_answer("\n\n" + text + "\n  \n") == parse_teacher_answer(text)


def test_thought_on_the_header_line_and_lean4_fence():
    text = "THOUGHT: Both sides agree.\nTACTIC:\n```lean4\nrfl\n```"
    assert parse_teacher_answer(text) == TeacherAnswer("Both sides agree.", "rfl")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty answer"),
        ("Sure! Here is the thought.", "does not start with THOUGHT:"),
        ("Here:\nTHOUGHT:\nx\nTACTIC:\n```lean\nsimp\n```", "does not start with THOUGHT:"),
        ("THOUGHT:\nsimplify", "no TACTIC: section"),
        ("THOUGHT:\nx\nTACTIC: simp", "TACTIC: is not followed by a ``` block"),
        ("THOUGHT:\nx\nTACTIC:\n```lean\nsimp", "the tactic block is not closed"),
        (
            "THOUGHT:\nx\nTACTIC:\n```lean\nsimp\n```\nHope this helps!",
            "text after the tactic block",
        ),
    ],
)
def test_strict_parser_names_what_is_wrong(text, reason):
    result = parse_teacher_answer(text)
    assert isinstance(result, Unparsable)
    assert result.reason == reason and result.text == text


def test_empty_thought_parses_for_the_filter_to_reject():
    assert parse_teacher_answer("THOUGHT:\nTACTIC:\n```lean\nsimp\n```") == TeacherAnswer(
        "", "simp"
    )
