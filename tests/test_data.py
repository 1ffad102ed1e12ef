import json

import pytest

from leanstar.data import load_leandojo, load_theorems, parse_statement, sample_pairs, traced_steps
from leanstar.data.leandojo import LeanDojoFormatError
from leanstar.data.theorems import TheoremFormatError


def test_bundled_minif2f_counts_and_statements():
    thms = load_theorems("bundled:minif2f-lean4-v4.24.jsonl")
    assert len(thms) == 488
    assert sum(t.split == "test" for t in thms) == 244
    assert sum(t.split == "valid" for t in thms) == 244
    assert len(load_theorems("bundled:minif2f-lean4-v4.24.jsonl", split="test")) == 244
    first = next(t for t in thms if t.name == "aime_1983_p1")
    assert first.statement.startswith("theorem aime_1983_p1 (x y z w : ℕ)")
    assert first.statement.endswith("Real.log w / Real.log z = 60")
    assert first.header.startswith("import Mathlib")


def test_bundled_deepseek_layout():
    thms = load_theorems("bundled:minif2f-deepseek.jsonl")
    assert len(thms) == 488
    t = next(t for t in thms if t.name == "amc12a_2015_p10")
    assert t.statement.endswith(": x = 26")
    assert t.goal.endswith("⊢ x = 26")
    assert "Integers $x$ and $y$" in t.informal


@pytest.mark.parametrize(
    "text, expected",
    [
        ("theorem t : 1 = 1 := by sorry", "theorem t : 1 = 1"),
        ("theorem t : 1 = 1 := by\n", "theorem t : 1 = 1"),
        ("theorem t (h : let x := 1; x = 1) : True :=", "theorem t (h : let x := 1; x = 1) : True"),
    ],
)
def test_parse_statement(text, expected):
    assert parse_statement(text) == expected


def test_parse_statement_without_placeholder():
    with pytest.raises(ValueError, match="does not end"):
        parse_statement("theorem t : 1 = 1 := rfl")


def test_theorem_file_errors_name_line_and_field(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps({"name": "a", "formal_statement": "theorem a : True := by sorry"})
        + "\n\n"
        + json.dumps({"name": "b"})
        + "\n"
    )
    with pytest.raises(TheoremFormatError, match=r"t\.jsonl:3: field 'formal_statement' missing"):
        load_theorems(str(path))
    path.write_text("{oops\n")
    with pytest.raises(TheoremFormatError, match=r"t\.jsonl:1: not valid JSON"):
        load_theorems(str(path))


def test_bundled_leandojo_counts():
    thms = load_leandojo("bundled:leandojo-benchmark4-sample.json")
    assert len(thms) == 34
    assert sum(1 for t in thms if t.steps) == 17
    steps = traced_steps(thms)
    assert len(steps) == 40
    first = next(
        t for t in thms if t.full_name == "CategoryTheory.Equivalence.invFunIdAssoc_hom_app"
    )
    assert [s.tactic for s in first.steps] == ["dsimp [invFunIdAssoc]", "aesop_cat"]
    assert first.steps[1].state_after == "no goals"
    assert first.as_theorem().goal == first.steps[0].state_before


def test_sample_pairs_limits_and_determinism():
    thms = load_leandojo("bundled:leandojo-benchmark4-sample.json")
    pairs = sample_pairs(thms, per_file=1, per_theorem=2, seed=3)
    assert pairs == sample_pairs(thms, per_file=1, per_theorem=2, seed=3)
    by_file, by_thm = {}, {}
    for p in pairs:
        by_file.setdefault(p.file_path, set()).add(p.theorem)
        by_thm[p.theorem] = by_thm.get(p.theorem, 0) + 1
    assert all(len(v) == 1 for v in by_file.values())
    assert all(n <= 2 for n in by_thm.values())
    assert len(sample_pairs(thms, per_file=5, per_theorem=4, seed=0)) == sum(
        min(4, len(t.steps)) for t in thms
    )


def test_leandojo_format_errors(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps(
            [
                {
                    "url": "u",
                    "commit": "c",
                    "file_path": "f",
                    "full_name": "n",
                    "traced_tactics": [{"tactic": "rfl", "state_before": "⊢ True"}],
                }
            ]
        )
    )
    with pytest.raises(
        LeanDojoFormatError,
        match=r"theorem #0 \(n\): traced_tactics\[0\]: missing or non-string \['state_after'\]",
    ):
        load_leandojo(path)
    path.write_text(json.dumps([{"url": "u"}]))
    with pytest.raises(LeanDojoFormatError, match="missing field"):
        load_leandojo(path)
