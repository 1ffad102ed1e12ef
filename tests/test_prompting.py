import pytest

from leanstar.prompting import (
    Parsed,
    Unparsable,
    parse_completion,
    plain_prompt,
    prover_prompt,
    prover_target,
    prover_user_message,
)

STATE = "n : ℕ\nh₀ : n % 5 = 3\n⊢ 2 * n % 5 = 1"


def test_prover_user_message_exact():
    assert prover_user_message(STATE) == (
        "Lean 4 proof state:\n```lean\nn : ℕ\nh₀ : n % 5 = 3\n⊢ 2 * n % 5 = 1\n```\n"
        "Think briefly about how to make progress on this goal, then give the next tactic in a ```lean block."
    )
    assert prover_user_message(STATE, with_thought=False) == (
        "Lean 4 proof state:\n```lean\nn : ℕ\nh₀ : n % 5 = 3\n⊢ 2 * n % 5 = 1\n```\n"
        "Give the next tactic in a ```lean block."
    )


def test_plain_prompt_exact():
    assert (
        plain_prompt("⊢ True") == "Lean 4 proof state:\n```lean\n⊢ True\n```\nThought and tactic:\n"
    )
    assert (
        plain_prompt("⊢ True", with_thought=False)
        == "Lean 4 proof state:\n```lean\n⊢ True\n```\nTactic:\n"
    )


def test_prover_target_exact():
    assert prover_target("omega", "Modular arithmetic on naturals.") == (
        "Modular arithmetic on naturals.\n```lean\nomega\n```"
    )
    assert prover_target("  omega \n") == "```lean\nomega\n```"
    assert prover_target("omega", "  ") == "```lean\nomega\n```"


def test_prompt_uses_chat_template_when_present(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert prover_prompt("⊢ True", True, tok) == (
        "<|im_start|>user\n" + prover_user_message("⊢ True") + "<|im_end|>\n<|im_start|>assistant\n"
    )
    tok.chat_template = None
    assert prover_prompt("⊢ True", True, tok) == plain_prompt("⊢ True")


@pytest.mark.parametrize("thought", ["", "We reduce modulo 5."])
@pytest.mark.parametrize("tactic", ["omega", "constructor\n· simp\n· ring_nf"])
def test_target_round_trips_through_parser(thought, tactic):
    parsed = parse_completion(prover_target(tactic, thought))
    assert parsed == Parsed(thought=thought, tactic=tactic, closed=True)


@pytest.mark.parametrize(
    "text, thought, tactic, closed, trailing",
    [
        ("Think.\n```lean\nsimp\n```", "Think.", "simp", True, ""),
        ("Think.\n```lean4\nsimp\n```", "Think.", "simp", True, ""),
        ("Think.\n```\nsimp\n```", "Think.", "simp", True, ""),
        ("Think.\n```lean\nsimp [h]\n", "Think.", "simp [h]", False, ""),  # cut by a stop string
        (
            "```lean\n\n  nlinarith [sq_nonneg x]  \n\n```",
            "",
            "  nlinarith [sq_nonneg x]",
            True,
            "",
        ),
        (
            "A.\n```lean\nring\n```\nThat should do it.\n```lean\nsimp\n```",
            "A.",
            "ring",
            True,
            "That should do it.\n```lean\nsimp\n```",
        ),
        ("  \n```lean\nlinarith\n```<|im_end|>", "", "linarith", True, "<|im_end|>"),
    ],
)
def test_parse_completion(text, thought, tactic, closed, trailing):
    assert parse_completion(text) == Parsed(thought, tactic, closed, trailing)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("I would use simp here.", "no ```lean block"),
        ("", "no ```lean block"),
        ("Thought.\n```lean\n\n```", "empty ```lean block"),
        ("Thought.\n```lean\n", "empty ```lean block"),
        ("Thought ```lean simp```", "code fence without a newline"),
    ],
)
def test_unparsable_is_a_value_not_an_exception(text, reason):
    assert parse_completion(text) == Unparsable(reason, text)
