"""The data behind the trace views: digests, the index, its filters, counts and comparisons.

Every run here is a FIXTURE (leanstar.traces.fixture): real proof states, tactics and
resulting states from the bundled LeanDojo Benchmark 4 sample; made-up thoughts, failures,
timings and theorem copies. Expected values are recomputed in the tests from the records
themselves, by code independent of the index.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from leanstar.jsonl import JsonlError, read_records
from leanstar.records import REPLAY_LABEL, Theorem, Trajectory, to_json
from leanstar.traces.compare import Side, compare, round_comparisons
from leanstar.traces.digest import digest, error_kind, tactic_head, tokenize
from leanstar.traces.fixture import (
    FIXTURE_LEAN_LABEL,
    FIXTURE_MODEL,
    FixtureSpec,
    bases,
    write_fixture_run,
)
from leanstar.traces.index import TheoremQuery, TraceIndex
from leanstar.traces.ledger import Ledger
from leanstar.traces.report import ReportTooLarge, report_data
from leanstar.traces.runfiles import discover, parse_run_spec
from leanstar.traces.summary import round_table, summary_html


def fixture_run(path, **spec):
    """A FIXTURE run (see the module docstring) and its generator's own account of it."""
    stats = write_fixture_run(path, FixtureSpec(**spec))
    return path, stats


def records(run) -> list[Trajectory]:
    return [t for p in discover(run).trajectories for t in read_records(p, Trajectory)]


def words(text: str | None) -> set[str]:
    """Search words, split without the regex the index uses: runs of alphanumerics."""
    out, cur = set(), []
    for ch in (text or "").lower() + " ":
        if ch.isalnum():
            cur.append(ch)
        elif cur:
            out.add("".join(cur))
            cur = []
    return out


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    """FIXTURE: 40 theorems x 6 attempts x 3 rounds, round-K/ layout, replay-labelled."""
    return fixture_run(
        tmp_path_factory.mktemp("fixture") / "run3", theorems=40, attempts=6, rounds=3,
        layout="rounds",
    )  # fmt: skip


@pytest.fixture(scope="module")
def trajs3(run3) -> list[Trajectory]:
    return records(run3[0])


@pytest.fixture(scope="module")
def index3(run3):
    with TraceIndex(run3[0]) as index:
        index.update()
        yield index


# ---------------------------------------------------------------- digests


@pytest.mark.parametrize(
    "tactic, head",
    [
        ("nth_rw 1 [← rpow_one x]", "nth_rw"),
        ("· simp [h]", "simp"),
        ("  exact?", "exact?"),
        ("(norm_num)", "norm_num"),
        ("constructor <;> simp", "constructor"),
        ("", "(none)"),
        (None, "(none)"),
        ("⟨1, rfl⟩", "(other)"),
    ],
)
def test_tactic_head(tactic, head):
    assert tactic_head(tactic) == head


@pytest.mark.parametrize(
    "outcome, message, kind",
    [
        ("lean_error", "unsolved goals\nx : ℕ\n⊢ x = x", "unsolved goals"),
        ("lean_error", "Unknown identifier `my_fake_premise`", "unknown identifier"),
        ("lean_error", "unexpected token 'sorry'; expected command", "parse error"),
        ("lean_error", "linarith failed to find a contradiction\n⊢ False", "linarith failed"),
        ("lean_error", "type expected, got\n  (set Nat : ?m.3 PUnit)", "type expected, got"),
        ("lean_error", "don't know how to synthesize placeholder\ncontext:\n⊢ Nat", "cannot synthesize placeholder"),
        ("lean_error", "invalid field 'foo', the environment does not contain 'Nat.foo' 12", "invalid field …, the environment does not contain … N"),
        ("timeout", None, "timeout"),
        ("unknown_to_replay", "no record", "unknown to replay"),
        ("lean_error", "", "error (no message)"),
    ],
)  # fmt: skip
def test_error_kind(outcome, message, kind):
    assert error_kind(outcome, message) == kind


def test_tokenize_keeps_unicode_letters_and_splits_symbols():
    assert tokenize("hx : 0 < x ⊢ ℝ≥0∞ Nat.succ_le") == {"hx", "0", "x", "ℝ", "nat", "succ", "le"}
    assert tokenize(None) == set()


def test_digest_names_file_line_and_field(trajs3):
    line = to_json(trajs3[0])
    line["steps"][1]["outcome"] = "maybe"
    with pytest.raises(JsonlError, match=r"run.jsonl:7: trajectory.steps\[1\].outcome: 'maybe'"):
        digest(line, "run.jsonl:7")
    del line["theorem"]
    with pytest.raises(JsonlError, match=r"x:1: trajectory.theorem: missing"):
        digest(line, "x:1")
    with pytest.raises(JsonlError, match="newer"):
        digest({**to_json(trajs3[0]), "schema": "trajectory/9"}, "x:1")


# ---------------------------------------------------------------- the fixture itself


def test_fixture_states_are_real_leandojo_states(trajs3):
    real = {s.state_before for b in bases() for s in b.steps}
    real |= {s.state_after for b in bases() for s in b.steps}
    trajs = trajs3
    assert trajs and all(t.model == FIXTURE_MODEL and t.replay for t in trajs)
    for t in trajs:
        for s in t.steps:
            assert s.state in real
            assert s.state_after is None or s.state_after in real


# ---------------------------------------------------------------- the index


def test_index_counts_equal_a_fold_of_the_records(run3, trajs3, index3):
    run, stats = run3
    trajs = trajs3
    meta = index3.meta()
    assert meta["trajectories"] == len(trajs) == stats.trajectories
    assert meta["theorems"] == 40 and meta["rounds"] == [0, 1, 2]
    assert meta["splits"] == ["test", "train"]
    assert meta["checkers"] == {REPLAY_LABEL: len(trajs)}
    folded = Ledger()
    for i, t in enumerate(trajs):
        folded.add(digest(to_json(t), f"record {i}"))
    assert index3.ledger() == folded
    for rnd in range(3):
        assert index3.ledger().proved([rnd]) == stats.proved[rnd]
        assert index3.ledger().attempted([rnd]) == stats.attempted[rnd]


def test_round_table_counts(index3, run3):
    stats = run3[1]
    rows = round_table(index3.ledger())
    earlier: set[str] = set()
    for row in rows:
        r = row["round"]
        assert row["attempted"] == len(stats.attempted[r])
        assert row["proved"] == len(stats.proved[r])
        assert row["pass_rate"] == pytest.approx(len(stats.proved[r]) / len(stats.attempted[r]))
        assert row["new"] == len(stats.proved[r] - earlier)
        assert row["proofs_replay"] == row["proved_attempts"] and row["proofs_lean"] == 0
        earlier |= stats.proved[r]


def all_names(index, **query) -> list[str]:
    q = TheoremQuery(per_page=7, **query)
    names = []
    while True:
        page = index.theorem_page(q)
        names += [r["name"] for r in page["rows"]]
        if not page["rows"]:
            assert len(names) == page["total"]
            return names
        q.page += 1


def expected_names(trajs, theorems, rounds=None, split="", status="any", text=""):
    """The theorem-table filter, recomputed from the records."""
    keep = set(range(3)) if rounds is None else set(rounds)
    by_theorem: dict[str, list[Trajectory]] = {}
    for t in trajs:
        if t.round in keep:
            by_theorem.setdefault(t.theorem, []).append(t)
    out = []
    for name, info in theorems.items():
        mine = by_theorem.get(name, [])
        attempted, proved = bool(mine), any(t.proved for t in mine)
        ok = {
            "any": True,
            "proved": proved,
            "failed": attempted and not proved,
            "not_attempted": not attempted,
            "rejected": any(t.outcome.value == "rejected" for t in mine),
            "error": any(t.outcome.value == "error" for t in mine),
        }[status]
        if split and info.split != split:
            ok = False
        if ok and text.strip():
            have = words(name) | words(info.goal)
            for t in mine:
                have |= words(" ".join(f"{s.thought} {s.tactic}" for s in t.steps))
            wanted = words(text)
            ok = bool(wanted) and all(any(h.startswith(w) for h in have) for w in wanted)
        if ok:
            out.append(name)
    return out


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"status": "proved"},
        {"status": "failed", "rounds": [0]},
        {"status": "not_attempted", "rounds": [1]},
        {"status": "rejected"},
        {"status": "error", "rounds": [2]},
        {"split": "test"},
        {"split": "train", "status": "failed"},
        {"text": "rewrite"},
        {"text": "nth_rw"},
        {"text": "rpow one"},
        {"text": "ℝ"},
        {"text": "⊢"},
        {"text": "zzzz"},
        {"text": "hypothesis", "rounds": [2], "status": "proved"},
        {"text": "fx3"},
    ],
)
def test_theorem_table_filters(index3, run3, trajs3, query):
    trajs = trajs3
    theorems = {t.name: t for t in read_records(run3[0] / "theorems.jsonl", Theorem)}
    got = all_names(index3, **query)
    assert got == expected_names(trajs, theorems, **query)


def test_sorting_and_rows(index3):
    rows = index3.theorem_page(TheoremQuery(sort="shortest", per_page=1000))["rows"]
    lengths = [r["best_len"] for r in rows]
    proved = [n for n in lengths if n is not None]
    assert proved == sorted(proved) and lengths[: len(proved)] == proved
    names = [
        r["name"] for r in index3.theorem_page(TheoremQuery(sort="name", per_page=1000))["rows"]
    ]
    assert names == sorted(names)
    by_proved = index3.theorem_page(TheoremQuery(sort="proved", per_page=1000, rounds=[1]))["rows"]
    assert [r["proved"] for r in by_proved] == sorted(
        (r["proved"] for r in by_proved), reverse=True
    )
    with pytest.raises(ValueError, match="status"):
        index3.theorem_page(TheoremQuery(status="proven"))


def test_theorem_attempts_and_trajectory_round_trip(index3, trajs3):
    trajs = [t for t in trajs3 if t.theorem == "Convex.thickening"]
    t = index3.theorem("Convex.thickening", text="rewrite")
    assert [(a["round"], a["attempt"]) for a in t["attempts"]] == [
        (x.round, x.attempt) for x in trajs
    ]
    for a, rec in zip(t["attempts"], trajs, strict=True):
        got = index3.trajectory(a["tid"])
        assert {k: v for k, v in got.items() if k not in ("tid", "source")} == to_json(rec)
        assert a["outcome"] == rec.outcome.value and a["replay"]
        assert a["proof_len"] == sum(
            s.outcome.value in ("proof_state", "proof_finished") for s in rec.steps
        )
    expected = {a["tid"] for a, rec in zip(t["attempts"], trajs, strict=True)
                if any(w.startswith("rewrite") for s in rec.steps for w in words(s.thought) | words(s.tactic))}  # fmt: skip
    assert set(t["matches"]) == expected
    assert index3.theorem("no.such.theorem") is None


def test_proofs_side_by_side_are_first_proofs_per_round(index3, run3, trajs3):
    trajs = trajs3
    name = next(n for n in sorted(run3[1].proved[0] & run3[1].proved[2]))
    proofs = index3.proofs(name)
    for p in proofs:
        first = min(
            t.attempt for t in trajs if t.theorem == name and t.round == p["round"] and t.proved
        )
        assert p["trajectory"]["attempt"] == first and p["trajectory"]["outcome"] == "proved"
    assert [p["round"] for p in proofs] == sorted(r for r in range(3) if name in run3[1].proved[r])


# ---------------------------------------------------------------- incremental updates


def test_incremental_update_reads_only_new_lines(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=10, attempts=3)
    more, _ = fixture_run(tmp_path / "more", theorems=14, attempts=3, seed=5, write_theorems=False)
    target = run / "trajectories.jsonl"
    new_lines = (more / "trajectories.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    new_lines = [ln.replace('"theorem":"', '"theorem":"new.') for ln in new_lines]
    with TraceIndex(run) as index:
        assert index.update().new_trajectories == 30
        with target.open("a", encoding="utf-8") as f:
            f.writelines(new_lines[:5])
            f.write(new_lines[5][:40])  # a writer mid-line
        report = index.update()
        assert report.new_trajectories == 5 and report.partial_files == ["trajectories.jsonl"]
        assert index.meta()["files"][1]["partial"]
        with target.open("a", encoding="utf-8") as f:
            f.write(new_lines[5][40:])
            f.writelines(new_lines[6:])
        report = index.update()
        assert report.new_trajectories == len(new_lines) - 5 and not report.partial_files
        assert index.update().new_trajectories == 0
        assert index.meta()["trajectories"] == 30 + len(new_lines)
        folded = Ledger()
        for i, t in enumerate(records(run)):
            folded.add(digest(to_json(t), str(i)))
        assert index.ledger() == folded


def test_replaced_file_rebuilds_the_index(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=8, attempts=3)
    target = run / "trajectories.jsonl"
    with TraceIndex(run) as index:
        index.update()
        lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        target.write_text("".join(lines[:10]), encoding="utf-8")
        report = index.update()
        assert report.rebuilt and index.meta()["trajectories"] == 10


def test_bad_line_is_reported_with_file_line_and_field(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=3, attempts=2)
    target = run / "trajectories.jsonl"
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace('"outcome":"', '"outcome":"x', 1)
    target.write_text("".join(lines), encoding="utf-8")
    with (
        TraceIndex(run) as index,
        pytest.raises(JsonlError, match=r"trajectories.jsonl:3: trajectory.outcome"),
    ):
        index.update()
    target.write_text("".join(lines[:2]) + "{not json\n", encoding="utf-8")
    with (
        TraceIndex(run) as index,
        pytest.raises(JsonlError, match=r"trajectories.jsonl:3: not valid JSON"),
    ):
        index.update()


def test_theorems_file_gives_statements_and_unattempted_theorems(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=5, attempts=2)
    extra = Theorem(
        name="mathd_extra", statement="theorem mathd_extra (x : ℕ) : x + 0 = x", split="valid"
    )
    with (run / "theorems.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(to_json(extra), ensure_ascii=False) + "\n")
    with TraceIndex(run) as index:
        index.update()
        assert all_names(index, status="not_attempted") == ["mathd_extra"]
        assert all_names(index, text="mathd extra") == ["mathd_extra"]
        assert index.theorem("mathd_extra")["statement"] == extra.statement
        assert index.meta()["splits"] == ["test", "train", "valid"]


def test_discover_and_run_specs(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=3, attempts=1, rounds=12, layout="rounds")
    files = discover(run)
    assert [p.parent.name for p in files.trajectories] == [f"round-{k}" for k in range(12)]
    assert len(files.proofs) == 12 and files.theorems == [run / "theorems.jsonl"]
    assert parse_run_spec(f"{run}:3") == (run, 3)
    assert parse_run_spec(str(run)) == (run, None)
    with pytest.raises(FileNotFoundError, match="no such run"):
        discover(tmp_path / "absent")


# ---------------------------------------------------------------- report data, summary, comparisons


def test_report_data_whole_run_and_subset(index3, run3):
    data = report_data(index3)
    assert len(data["theorems"]) == 40 and len(data["trajectories"]) == run3[1].trajectories
    assert "subset" not in data["meta"]
    t = next(t for t in data["theorems"] if t["name"] == "Convex.thickening")
    assert set(t["tokens"]["-1"]) >= {"convex", "thickening"}
    sub = report_data(index3, rounds=[1], status="proved")
    assert {tr["round"] for tr in sub["trajectories"].values()} == {1}
    assert [t["name"] for t in sub["theorems"]] == all_names(index3, rounds=[1], status="proved")
    assert "part of the run" in sub["meta"]["subset"] and sub["meta"]["rounds"] == [1]
    with pytest.raises(ReportTooLarge, match="traces serve"):
        report_data(index3, max_trajectories=100)


def test_summary_html_is_self_contained_and_labels_replay(index3):
    html = summary_html(index3.ledger())
    assert html.count("<svg") == 7
    assert REPLAY_LABEL in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_round_comparisons_match_the_sets(index3, run3):
    stats = run3[1]
    comps = round_comparisons(index3.ledger())
    assert [c.title for c in comps] == ["round 0 → round 1", "round 1 → round 2"]
    for c, (a, b) in zip(comps, [(0, 1), (1, 2)], strict=True):
        assert set(c.gained) == (stats.proved[b] - stats.proved[a]) & stats.attempted[a]
        assert set(c.lost) == (stats.proved[a] - stats.proved[b]) & stats.attempted[b]
        assert set(c.dropped_by_b) == stats.proved[a] - stats.attempted[b]
        assert c.kept == len(stats.proved[a] & stats.proved[b])


def test_compare_a_thinking_run_with_a_tactic_only_run(tmp_path):
    plain, _ = fixture_run(tmp_path / "plain", theorems=17, attempts=4, thoughts=False, seed=1)
    thinking, _ = fixture_run(tmp_path / "thinking", theorems=17, attempts=4, seed=2)
    with TraceIndex(plain) as ia, TraceIndex(thinking) as ib:
        ia.update()
        ib.update()
        a, b = Side("plain", ia.ledger()), Side("thinking", ib.ledger())
    assert b.has_thoughts and not a.has_thoughts
    c = compare(a, b)
    assert c.only_title("b").startswith("Tactics that appear only with thoughts")
    tac_a, tac_b = a.ledger.tactic_totals(), b.ledger.tactic_totals()
    assert {h for h, _ in c.only_b} == {
        h for h in tac_b if tac_b[h][2] and not tac_a.get(h, [0] * 5)[2]
    }
    measures = {m[0]: m for m in c.measures}
    assert measures["steps with a thought (%)"][1:3] == ("0.0", "100.0")
    assert measures["thought length, every step: mean (chars)"][1] == "—"


def test_lean_labelled_fixture_is_not_called_replay(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=6, attempts=3, checked_by=FIXTURE_LEAN_LABEL)
    with TraceIndex(run) as index:
        index.update()
        rows = index.theorem_page(TheoremQuery())["rows"]
        assert all(r["proved_replay"] == 0 for r in rows)
        assert not any(c["replay_only"] for r in rows for c in r["rounds"].values())
        assert index.meta()["checkers"] == {FIXTURE_LEAN_LABEL: 18}


def test_index_lives_where_asked(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=2, attempts=1)
    elsewhere = tmp_path / "idx" / "t.sqlite"
    with TraceIndex(run, elsewhere) as index:
        index.update()
    assert elsewhere.exists() and not (run / "traces-index.sqlite").exists()
    shutil.rmtree(run)


def test_bar_chart_geometry_and_values():
    from leanstar.traces.plots import bar_chart, nice_ceiling

    assert [nice_ceiling(x) for x in (0, 3, 7, 31, 100, 0.3)] == [4, 4, 8, 40, 100, 0.4]
    svg = bar_chart("t", ["a", "b", "c"], [("", [31, 2, 0])], note="n")
    bars = [
        tuple(map(float, m))
        for m in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', svg)
    ]
    assert len(bars) == 3
    baselines = {round(y + h, 1) for y, h in bars}
    assert len(baselines) == 1  # every bar stands on the axis
    (y31, h31), (_, h2), _ = bars
    assert y31 >= 38 and h31 / h2 == pytest.approx(31 / 2)  # below the title, to scale
    assert "a: 31" in svg and "<title>" in svg


def test_a_line_changed_in_place_is_an_error_not_another_attempt(tmp_path):
    run, _ = fixture_run(tmp_path / "run", theorems=3, attempts=2)
    with TraceIndex(run) as index:
        index.update()
        target = run / "trajectories.jsonl"
        text = target.read_text(encoding="utf-8")
        first = text.split("\n", 1)[0]
        with target.open("r+", encoding="utf-8") as f:  # same size, same inode
            f.write(first.replace('"attempt":0', '"attempt":9', 1))
        with pytest.raises(JsonlError, match="changed since it was indexed"):
            index.trajectory(1)
