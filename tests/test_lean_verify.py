"""The whole-proof check: the textual screen (table of cheats, honest proofs, real proofs), the
rules over Lean's answers (real answers where Lean gave them), and the REPL pool's verify."""

import asyncio
import json
from pathlib import Path

import pytest
from fakes import FIXTURES, HANDWRITTEN, V433, fake_repl_argv

from leanstar.data import load_leandojo
from leanstar.lean import verifier
from leanstar.lean.env import assemble_proof
from leanstar.lean.pool import Launch, PoolOptions, ReplPool
from leanstar.lean.protocol import ErrorResponse, parse_response
from leanstar.lean.replay import ReplayEnv
from leanstar.lean.screen import screen_proof, tokens, uses_native
from leanstar.records import REPLAY_LABEL, Theorem

# ---------------------------------------------------------------- the textual screen

CHEATS = [
    # (proof text, the token the screen must name, a word of the reason)
    ("sorry", "sorry", "admits"),
    ("admit", "admit", "admits"),
    ("stop\n  simp", "stop", "admits"),
    ("exact sorryAx _ false", "sorryAx", "admits"),
    ("exact «sorryAx» _ false", "«sorryAx»", "admits"),
    ("apply?", "apply?", "proof search"),
    ("exact?", "exact?", "proof search"),
    ("rw?", "rw?", "proof search"),
    ("simp\n\naxiom cheat : False", "axiom", "axiom"),
    ("set_option maxHeartbeats 0 in\n  nlinarith", "set_option", "options"),
    ("set_option debug.skipKernelTC true in\n  simp", "set_option", "options"),
    ("norm_num [debug.skipKernelTC]", "debug.skipKernelTC", "kernel"),
    ("simp\n#exit", "#exit", "new command"),
    ("simp\n#eval IO.println 1", "#eval", "new command"),
    ("simp\n#print axioms foo", "#print", "new command"),
    ('macro "cheat" : tactic => `(tactic| sorry)', "macro", "metaprograms"),
    ('elab "cheat" : tactic => pure ()', "elab", "metaprograms"),
    ("simp\nrun_cmd pure ()", "run_cmd", "metaprograms"),
    ("run_tac pure ()", "run_tac", "metaprograms"),
    ("exact by_elab pure default", "by_elab", "metaprograms"),
    ("simp\n@[implemented_by f] def g := 1", "implemented_by", "kernel"),
    ('simp\n@[extern "c"] opaque h : Nat', "extern", "kernel"),
    ("exact unsafe (cast sorry)", "unsafe", "kernel"),
    ("simp\ntheorem easier : True := trivial", "theorem", "new command"),
    ("simp\nend\nnamespace Foo", "end", "new command"),
    ("simp\nattribute [simp] foo", "attribute", "new command"),
    ('simp\nnotation "⊤" => True', "notation", "metaprograms"),
    ("exact modifyEnv id", "modifyEnv", "kernel"),
    # native code, refused unless allowed
    ("native_decide", "native_decide", "compiled code"),
    ("decide +native", "native", "compiled code"),
    ("decide (config := { native := true })", "native", "compiled code"),
    ("bv_decide", "bv_decide", "compiled code"),
    ("exact Lean.ofReduceBool _ _ rfl", "Lean.ofReduceBool", "compiled code"),
    # comment and string tricks that hide a `sorry` from a naive regex
    ("/- hi -/sorry", "sorry", "admits"),
    ("simp --\nsorry", "sorry", "admits"),
    ("/- /- nested -/ still a comment -/ sorry", "sorry", "admits"),
    ('exact "/-"; sorry', "sorry", "admits"),
    ('exact ("--" ++ toString sorry)', "sorry", "admits"),
    ("exact '\"'; sorry", "sorry", "admits"),
    ("exact '\\''; sorry", "sorry", "admits"),
    ('exact s!"{sorry}"', "sorry", "admits"),
    ('exact s!"a{ "}" }{(sorry : Nat)}"', "sorry", "admits"),
    ('exact r"\\" ++ toString sorry ++ "x"', "sorry", "admits"),
    ('exact r#"a"b"# ++ toString sorry', "sorry", "admits"),
    ("exact(sorry)", "sorry", "admits"),
    ("simp;sorry", "sorry", "admits"),
    ("all_goals first | simp | admit", "admit", "admits"),
    ("exact @sorry _ _", "sorry", "admits"),
    ("exact !sorry", "sorry", "admits"),
    ("exact 0xasorry", "sorry", "admits"),  # a hex literal, then `sorry`
    ("exact 1e5sorry", "sorry", "admits"),
    # a text that never closes would swallow whatever follows it
    ("simp /-", "/-", "unterminated block comment"),
    ('exact "abc', '"a', "unterminated string"),
    ('exact s!"{x', '"{', "unterminated"),
    ("exact «sorr", "«s", "unterminated"),
]


@pytest.mark.parametrize("text,token,why", CHEATS, ids=[c[0][:30] for c in CHEATS])
def test_cheating_proofs_are_rejected_with_their_reason(text, token, why):
    finding = screen_proof(text)
    assert finding is not None, text
    assert finding.token == token
    assert why in finding.reason and finding.reason.startswith("soundness screen:")


HONEST = [
    "exact_mod_cast h",
    "apply_fun f at h",
    "have h_sorry : x = 1 := by norm_num",
    "exact Nat.admit_lemma h",
    "simp [axiom_of_choice, set_option_lemma, h_exit, macro_foo]",
    "exact hstop",
    "linarith [sq_nonneg (a - b), sq_nonneg (a + b)]",
    "simp?",
    "aesop?",
    "decide",
    "omega",
    "exact (f '' s)",
    "rw [Set.mem_preimage] at h ⊢\n  exact h",
    "rw [Finset.card_eq] at #s",  # Mathlib's `#s`, not a command
    "-- sorry, this is only a comment\n  simp",
    "/- sorry -/ simp",
    "/- /- sorry -/ sorry -/ simp",
    'trace "sorry"',
    "exact x'",
    "exact h.1",
    "intro ε hε\n  exact ⟨ε / 2, by positivity⟩",
    "nlinarith [mul_pos ha hb, h₀, h₁]",
    "open Real in\n  simp [Real.sqrt_eq_iff]",
    "rcases h with ⟨x, rfl⟩ | h",
    "calc a = b := by ring\n    _ = c := h",
    "exact 'a'",
]


@pytest.mark.parametrize("text", HONEST)
def test_honest_proofs_pass_even_with_banned_words_inside_names(text):
    assert screen_proof(text) is None, screen_proof(text)


def test_native_is_allowed_when_configured_and_recorded():
    assert screen_proof("native_decide", allow_native_decide=True) is None
    assert screen_proof("decide +native", allow_native_decide=True) is None
    assert uses_native("norm_num\n  native_decide") and not uses_native("decide")
    assert screen_proof("native_decide\n  sorry", allow_native_decide=True).token == "sorry"


def test_the_finding_says_where():
    finding = screen_proof("simp\n  nlinarith [h]\n  exact sorry")
    assert (finding.line, finding.column) == (3, 9)
    assert "line 3, column 9" in finding.reason


def test_lexer_keeps_interpolated_code_and_drops_literals():
    kinds = [(t.kind, t.text) for t in tokens('s!"a {x.1} b" ++ "y" -- z\n  w')]
    assert ("ident", "x") in kinds and ("ident", "w") in kinds
    assert ("ident", "y") not in kinds and ("ident", "z") not in kinds


def test_the_quick_pass_never_clears_what_the_lexer_rejects():
    import random

    from leanstar.lean.screen import _clearly_clean, _screen_tokens

    pieces = [
        "sorry", "admit", "exact?", "simp", "h₀", "«", "»", "sorryAx", "Lean.", ".", "ofReduceBool",
        "native", "_decide", " ", "\n", "--", "/-", "-/", '"', "'", "s!", "{", "}", "r", "#",
        "exit", "x", "'a'", "λ", "(", ")", "set_option", "_", "!", "?", "1", "end", "ε", "0x", "e5",
        "a", "α", "₁", "stop", "«sorry»", "h.1",
    ]  # fmt: skip
    rng = random.Random(0)
    texts = [t for t, _, _ in CHEATS] + HONEST
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(5000)]
    for text in texts:
        if _clearly_clean(text):
            assert _screen_tokens(text, False) is None, text


def _kimina_rows():
    path = FIXTURES / "kimina" / "kimina-match-v4.15.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_real_proofs_pass_the_screen():
    """102 real proofs (Goedel-Prover on Lean Workbook, as Kimina checked them) and the 40
    traced Mathlib tactics bundled with leanstar: no false alarm."""
    rows = _kimina_rows()
    assert len(rows) == 102
    for row in rows:
        body = row["input"].split(":= by", 1)[1]
        assert screen_proof(body) is None, row["name"]
    for theorem in load_leandojo("bundled:leandojo-benchmark4-sample.json"):
        for step in theorem.steps:
            assert screen_proof(step.tactic) is None, step.tactic


# ---------------------------------------------------------------- rules over Lean's answers


def _recorded(test, index, folder=V433):
    from fakes.fake_repl import split_blocks

    text = (folder / "test" / f"{test}.expected.out").read_text(encoding="utf-8")
    return parse_response(json.loads(split_blocks(text)[index]))


def test_declared_name():
    assert verifier.declared_name("theorem foo (x : ℕ) : x = x") == "foo"
    assert verifier.declared_name("lemma Nat.bar {n : ℕ} : n = n") == "Nat.bar"
    assert verifier.declared_name("theorem «weird name» : True") == "«weird name»"
    assert verifier.declared_name("/-- doc: theorem x -/\ntheorem real : True") == "real"
    assert verifier.declared_name("theorem mathd_algebra_10\n  (h : x = 1) : x = 1") == (
        "mathd_algebra_10"
    )
    assert verifier.declared_name("example : True") is None


def test_judge_compile_on_real_answers():
    assert verifier.judge_compile(parse_response({"env": 3})) is None
    # errors (Lean v4.33: `have ... := by sorry` leaves goals unsolved)
    problem = verifier.judge_compile(_recorded("have_by_sorry", 0))
    assert problem.startswith("Lean reported an error (line 1): unsolved goals")
    # the kernel refused a proof
    problem = verifier.judge_compile(_recorded("app_type_mismatch2", 0))
    assert "(kernel) application type mismatch" in problem
    # the sorry warning, in both spellings
    new = verifier.judge_compile(_recorded("tactic_sorry", 0))
    old = verifier.judge_compile(_recorded("tactic_sorry", 0, folder=FIXTURES / "repl/v4.15.0"))
    assert new == old == "Lean reports that the proof uses `sorry`"
    # a protocol-level error
    assert verifier.judge_compile(ErrorResponse("Lean error:\nboom")) == "Lean: boom"


def test_kimina_answers_are_judged_clean():
    rows = _kimina_rows()
    timeouts = [r for r in rows if r["error"]]
    assert len(timeouts) == 4 and all("timed out" in r["error"] for r in timeouts)
    for row in rows:
        if row["error"]:
            continue
        answer = {
            "env": 0,
            **({"messages": row["response"]["messages"]} if "messages" in row["response"] else {}),
        }
        assert verifier.judge_compile(parse_response(answer)) is None, row["name"]


def _info(text):
    pos = {"line": 1, "column": 0}
    msg = {"severity": "info", "pos": pos, "endPos": pos, "data": text}
    return parse_response({"env": 1, "messages": [msg]})


def test_axioms_output_is_read_in_every_layout():
    one_line = _info("'foo' depends on axioms: [propext, Classical.choice, Quot.sound]")
    wrapped = _info("'foo' depends on axioms: [propext,\n Classical.choice,\n Quot.sound]")
    assert verifier.parse_axioms(one_line) == verifier.parse_axioms(wrapped)
    assert verifier.parse_axioms(wrapped) == ("propext", "Classical.choice", "Quot.sound")
    assert verifier.parse_axioms(_info("'foo' does not depend on any axioms")) == ()
    with pytest.raises(verifier.VerifyError):
        verifier.parse_axioms(_info("something else"))
    with pytest.raises(verifier.VerifyError, match="printed nothing"):
        verifier.parse_axioms(parse_response({"env": 1}))
    with pytest.raises(verifier.VerifyError, match="Unknown constant"):
        verifier.parse_axioms(ErrorResponse("Lean error:\nUnknown constant `foo`"))


@pytest.mark.parametrize(
    "axioms,allow,problem",
    [
        ((), False, None),
        (("propext", "Classical.choice", "Quot.sound"), False, None),
        (("propext", "sorryAx"), False, "sorryAx"),
        (("cheat",), False, "outside {Classical.choice, Quot.sound, propext}: cheat"),
        (("Lean.ofReduceBool",), False, "compiled code"),
        (("Lean.ofReduceBool", "Lean.trustCompiler"), True, None),
        (("foo._native.native_decide.ax_1_1",), False, "compiled code"),
        (("foo._native.native_decide.ax_1_1",), True, None),
        (("Lean.ofReduceBool", "cheat"), True, "cheat"),
    ],
)
def test_axiom_rules(axioms, allow, problem):
    got = verifier.judge_axioms(axioms, allow)
    assert got == problem if problem is None else problem in got


# ---------------------------------------------------------------- verify through the pool


def pool_over(*transcripts, allow_native=False):
    launch = Launch(fake_repl_argv(transcripts=transcripts))
    options = PoolOptions(num_workers=1, tactic_timeout_s=10, allow_native_decide=allow_native)
    return ReplPool(launch, options, label="fake REPL")


def verify(pool, theorem, tactics, **kw):
    async def main():
        try:
            return await pool.verify(theorem, tactics, **kw), pool.stats.copy()
        finally:
            await pool.close()

    return asyncio.run(main())


TWO = Theorem("two_add_two", "theorem two_add_two : 2 + 2 = 4")
BIG = Theorem("big_pow", "theorem big_pow : 2 ^ 10 = 1024")
CHEAT = Theorem("one_eq_two", "theorem one_eq_two : 1 = 2", header="axiom cheat : False")


def test_an_honest_proof_is_accepted_with_its_axioms():
    verdict, stats = verify(pool_over(HANDWRITTEN), TWO, ("rfl",))
    assert verdict.ok and verdict.checked_by == "fake REPL" and verdict.axioms == ()
    assert "statement unchanged" in verdict.reason and "axioms: none" in verdict.reason
    assert stats["requests"] == 4  # proof, #print axioms, #check, reference statement


def test_native_decide_is_refused_or_accepted_and_recorded():
    refused, stats = verify(pool_over(HANDWRITTEN), BIG, ("native_decide",))
    assert not refused.ok and "compiled code" in refused.reason and stats["requests"] == 0
    accepted, _ = verify(pool_over(HANDWRITTEN, allow_native=True), BIG, ("native_decide",))
    assert accepted.ok and accepted.uses_native_decide
    assert accepted.axioms == ("Lean.ofReduceBool", "Lean.trustCompiler")


def test_an_axiom_from_the_header_is_caught_by_print_axioms():
    verdict, _ = verify(pool_over(HANDWRITTEN), CHEAT, ("exact cheat.elim",))
    assert not verdict.ok and verdict.axioms == ("cheat",)
    assert "outside" in verdict.reason and "cheat" in verdict.reason


def test_lean_level_rejections_use_real_answers():
    """With the screen off, Lean's own answers (recorded) reject sorry and unsolved goals."""
    sorry = Theorem("foo", "theorem foo : 1 = 1")
    verdict, _ = verify(pool_over(V433), sorry, ("sorry",), screen=False)
    assert not verdict.ok and verdict.reason == "Lean reports that the proof uses `sorry`"
    have = Theorem("foo", "theorem foo (x : Int) : x = x")
    verdict, _ = verify(pool_over(V433), have, ("have h : x = 1 := by sorry",), screen=False)
    assert not verdict.ok and "unsolved goals" in verdict.reason


def test_screened_proofs_never_reach_lean():
    verdict, stats = verify(pool_over(HANDWRITTEN), TWO, ("rfl", "sorry"))
    assert not verdict.ok and verdict.reason.startswith("soundness screen:")
    assert stats["requests"] == 0


def test_unnamed_statement_and_unanswerable_checks():
    verdict, _ = verify(pool_over(HANDWRITTEN), Theorem("e", "example : True"), ("trivial",))
    assert not verdict.ok and "declares no theorem name" in verdict.reason
    other = Theorem("never", "theorem never : True")
    verdict, _ = verify(pool_over(HANDWRITTEN), other, ("trivial",))
    assert not verdict.ok and "fake REPL: no recorded answer" in verdict.reason


def test_the_proof_command_is_our_statement_plus_the_indented_body():
    body = assemble_proof(("intro x", "cases x with\n| inl h => exact h\n| inr h => exact h"))
    text = verifier.proof_command("theorem t (p : Prop) : p ∨ p → p", body)
    assert text == (
        "theorem t (p : Prop) : p ∨ p → p := by\n  intro x\n  cases x with\n"
        "  | inl h => exact h\n  | inr h => exact h"
    )


# ---------------------------------------------------------------- the replay environment


def test_replay_verify_applies_the_screen():
    theorems = load_leandojo("bundled:leandojo-benchmark4-sample.json")
    env = ReplayEnv(theorems)
    chain = next(
        t for t in theorems if t.full_name == "CategoryTheory.Equivalence.invFunIdAssoc_hom_app"
    )
    good = asyncio.run(env.verify(chain.as_theorem(), ("dsimp [invFunIdAssoc]", "aesop_cat")))
    assert good.ok and good.checked_by == REPLAY_LABEL
    bad = asyncio.run(env.verify(chain.as_theorem(), ("dsimp [invFunIdAssoc]", "sorry")))
    assert (
        not bad.ok and bad.reason.startswith("soundness screen:") and bad.checked_by == REPLAY_LABEL
    )


def test_fixture_provenance_files_exist():
    for path in ("repl/README.md", "repl/LICENSE-leanprover-community-repl",
                 "kimina/README.md", "kimina/LICENSE-kimina-lean-server"):  # fmt: skip
        assert (FIXTURES / path).is_file(), path
    assert Path(HANDWRITTEN / "verify.in").is_file()
