"""The trace commands end to end: `traces show`, `report`, `compare` and the server's API.

Runs are FIXTURES (leanstar.traces.fixture): real LeanDojo states, made-up attempts.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from leanstar import cli
from leanstar.records import REPLAY_LABEL
from leanstar.traces.fixture import FIXTURE_LEAN_LABEL, FixtureSpec, write_fixture_run
from leanstar.traces.index import TheoremQuery, TraceIndex
from leanstar.traces.server import start_server


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """FIXTURE: 30 theorems x 5 attempts x 2 rounds, replay-labelled."""
    path = tmp_path_factory.mktemp("views") / "run"
    write_fixture_run(path, FixtureSpec(theorems=30, attempts=5, rounds=2, layout="rounds"))
    return path


@pytest.fixture(scope="module")
def lean_run(tmp_path_factory):
    """FIXTURE marked as Lean-checked (the label itself says nothing was checked)."""
    path = tmp_path_factory.mktemp("views") / "lean-run"
    write_fixture_run(path, FixtureSpec(theorems=6, attempts=3, checked_by=FIXTURE_LEAN_LABEL))
    return path


def leanstar(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_show_summary_lists_rounds_and_labels_replay(run, capsys):
    rc, out = leanstar(capsys, "traces", "show", str(run), "--limit", "5")
    assert rc == 0
    assert "Per round" in out and "Theorems (first 5 of 30)" in out
    assert f"attempts checked by {REPLAY_LABEL}" in out
    assert "(replay)" in out and REPLAY_LABEL in out
    assert "Record files" in out and "round-1/proofs.jsonl" in out


def test_show_theorem_step_by_step(run, capsys):
    with TraceIndex(run) as index:
        index.update()
        name = next(
            r["name"] for r in index.theorem_page(TheoremQuery(status="proved", rounds=[1]))["rows"]
        )
        attempts = index.theorem(name)["attempts"]
    rc, out = leanstar(capsys, "traces", "show", str(run), name, "--round", "1")
    assert rc == 0
    assert "✓ accepted" in out and "Lean: no goals — proof complete" in out
    assert REPLAY_LABEL in out and "passed the whole-proof check" not in out
    failed = next(a for a in attempts if a["n_failed"])
    rc, out = leanstar(capsys, "traces", "show", str(run), name, "--round", str(failed["round"]),
                       "--attempt", str(failed["attempt"]))  # fmt: skip
    assert rc == 0 and "✗ failed" in out


def test_show_marks_proofs_that_passed_the_whole_proof_check(lean_run, capsys):
    with TraceIndex(lean_run) as index:
        index.update()
        name = index.theorem_page(TheoremQuery(status="proved"))["rows"][0]["name"]
    rc, out = leanstar(capsys, "traces", "show", str(lean_run), name)
    assert rc == 0
    assert "✓ passed the whole-proof check" in out and REPLAY_LABEL not in out


def test_show_resolves_parts_of_names(run, capsys):
    rc, out = leanstar(capsys, "traces", "show", str(run), "Convex.thick")
    assert rc == 2 and "matches several theorems" in out and "Convex.thickening.fx24" in out
    rc, out = leanstar(capsys, "traces", "show", str(run), "thickening.fx24")
    assert rc == 0 and "Convex.thickening.fx24" in out
    rc, out = leanstar(capsys, "traces", "show", str(run), "no_such_thing")
    assert rc == 2 and "no theorem" in out


def test_report_writes_one_offline_page(run, tmp_path, capsys):
    out_file = tmp_path / "r.html"
    rc, out = leanstar(capsys, "traces", "report", str(run), "--out", str(out_file))
    assert rc == 0 and "opens from disk" in out
    html = out_file.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    blob = re.search(
        r'<script type="application/json" id="leanstar-data">(.*?)</script>', html, re.S
    )
    data = json.loads(blob.group(1))
    assert len(data["theorems"]) == 30 and data["meta"]["rounds"] == [0, 1]
    assert len(data["trajectories"]) == sum(len(t["attempts"]) for t in data["theorems"])


def test_report_refuses_too_much_and_filters(run, tmp_path, capsys):
    rc, out = leanstar(capsys, "traces", "report", str(run), "--max_trajectories", "10",
                       "--out", str(tmp_path / "x.html"))  # fmt: skip
    assert rc == 2 and "traces serve" in out and not (tmp_path / "x.html").exists()
    rc, out = leanstar(capsys, "traces", "report", str(run), "--round", "1", "--status", "proved",
                       "--out", str(tmp_path / "y.html"))  # fmt: skip
    assert rc == 0 and "part of the run" in (tmp_path / "y.html").read_text(encoding="utf-8")


def test_report_escapes_record_text(tmp_path, capsys):
    run = tmp_path / "run"
    write_fixture_run(run, FixtureSpec(theorems=2, attempts=1))
    target = run / "trajectories.jsonl"
    evil = "</script><script>alert(1)</script><!--"
    target.write_text(target.read_text(encoding="utf-8").replace("We need", evil), encoding="utf-8")
    rc, _ = leanstar(capsys, "traces", "report", str(run), "--out", str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert rc == 0 and "<script>alert(1)" not in html


def test_compare_cli_runs_and_rounds(run, tmp_path, capsys):
    rc, out = leanstar(capsys, "traces", "compare", f"{run}:0", f"{run}:1",
                       "--out", str(tmp_path / "c.html"))  # fmt: skip
    assert rc == 0
    assert "Proofs and thoughts" in out and "Tactic choice" in out and "Gained" in out
    assert "Gained" in (tmp_path / "c.html").read_text(encoding="utf-8")
    rc, out = leanstar(capsys, "traces", "compare", str(run))
    assert rc == 0 and "round 0 → round 1" in out
    rc, out = leanstar(capsys, "traces", "compare", f"{run}:7", str(run))
    assert rc == 2 and "no round 7" in out


def get(url: str, host: str | None = None) -> tuple[int, object]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req) as r:
            body = r.read()
            kind = r.headers["Content-Type"]
            return r.status, json.loads(body) if "json" in kind else body.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture()
def server(run):
    with TraceIndex(run) as index:
        index.update()
    srv = start_server(run, port=0, refresh_s=0.2)
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_answers_like_the_index(server, run):
    status, page = get(server.url)
    assert status == 200 and 'id="leanstar-data">' not in page and "remoteApi" in page
    with TraceIndex(run) as index:
        for params in ({}, {"status": "failed", "round": "1"}, {"q": "rewrite", "split": "train"},
                       {"sort": "shortest", "page": "2", "per_page": "7"}):  # fmt: skip
            status, got = get(f"{server.url}api/theorems?{urllib.parse.urlencode(params)}")
            q = TheoremQuery(
                rounds=[int(params["round"])] if "round" in params else None,
                split=params.get("split", ""), status=params.get("status", "any"),
                text=params.get("q", ""), sort=params.get("sort", "order"),
                page=int(params.get("page", 1)), per_page=int(params.get("per_page", 50)),
            )  # fmt: skip
            assert status == 200 and got == index.theorem_page(q)
        name = got["rows"][0]["name"]
        status, thm = get(f"{server.url}api/theorem?name={urllib.parse.quote(name)}")
        assert status == 200 and thm["name"] == name
        tid = thm["attempts"][0]["tid"]
        assert get(f"{server.url}api/trajectory?tid={tid}") == (200, index.trajectory(tid))
    status, summary = get(f"{server.url}api/summary")
    assert status == 200 and summary["html"].count("<svg") == 7
    status, rounds = get(f"{server.url}api/rounds")
    assert status == 200 and "round 0 → round 1" in rounds["html"]


def test_server_refuses_bad_requests(server):
    assert get(f"{server.url}api/meta", host="attacker.example:80")[0] == 403
    assert get(f"{server.url}api/nothing")[0] == 404
    assert get(f"{server.url}api/theorems?status=proven")[0] == 400
    assert get(f"{server.url}api/trajectory?tid=999999")[0] == 400
    assert get(f"{server.url}api/theorem?name=absent")[0] == 404
    assert server.server_address[0] == "127.0.0.1"


def test_server_picks_up_appended_records(tmp_path):
    run = tmp_path / "run"
    write_fixture_run(run, FixtureSpec(theorems=4, attempts=2, rounds=2, layout="rounds"))
    with TraceIndex(run) as index:
        index.update()
    server = start_server(run, port=0, refresh_s=0.2)
    try:
        _appended_records_show_up(server, run, tmp_path)
    finally:
        server.shutdown()
        server.server_close()


def _appended_records_show_up(server, run, tmp_path):
    before = get(f"{server.url}api/meta")[1]["trajectories"]
    more = tmp_path / "more"
    write_fixture_run(more, FixtureSpec(theorems=3, attempts=2, seed=9, write_theorems=False))
    lines = (more / "trajectories.jsonl").read_text(encoding="utf-8")
    lines = lines.replace('"theorem":"', '"theorem":"late.').replace('"round":0', '"round":1')
    with (run / "round-1" / "trajectories.jsonl").open("a", encoding="utf-8") as f:
        f.write(lines)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if get(f"{server.url}api/meta")[1]["trajectories"] == before + 6:
            break
        time.sleep(0.1)
    assert get(f"{server.url}api/meta")[1]["trajectories"] == before + 6
    status, page = get(f"{server.url}api/theorems?q=late")
    assert page["total"] == 3


def test_serve_cli_starts_on_loopback(run, monkeypatch, capsys):
    import leanstar.traces.server as server_mod

    started = {}

    def fake_sleep(_):
        started["url"] = re.search(r"http://127\.0\.0\.1:\d+/", capsys.readouterr().out).group(0)
        started["meta"] = get(started["url"] + "api/meta")
        raise KeyboardInterrupt

    monkeypatch.setattr(server_mod.time, "sleep", fake_sleep)
    rc = cli.main(["traces", "serve", str(run), "--port", "0", "--refresh_s", "0"])
    assert rc == 0 and started["meta"][0] == 200
    assert threading.active_count() < 50
