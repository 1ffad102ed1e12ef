"""The trace viewer in a real browser: headless Chromium opens a report from disk and the
served viewer on 127.0.0.1, filters, searches, opens trajectories and checks what is shown.

Runs are FIXTURES (leanstar.traces.fixture): real LeanDojo states, made-up attempts.
Screenshots land in the test's temporary directory. Skips (saying why) only where Chromium
or chromedriver is absent; CI installs them with apt.
"""

from __future__ import annotations

import pytest

from leanstar.records import REPLAY_LABEL
from leanstar.traces.fixture import FIXTURE_LEAN_LABEL, FixtureSpec, write_fixture_run
from leanstar.traces.index import TheoremQuery, TraceIndex
from leanstar.traces.page import viewer_page
from leanstar.traces.report import report_data
from leanstar.traces.server import start_server
from tests.traces_browser import Browser, chromium_missing

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """FIXTURE: 40 theorems x 5 attempts x 3 rounds, replay-labelled, indexed."""
    path = tmp_path_factory.mktemp("browser") / "run"
    write_fixture_run(path, FixtureSpec(theorems=40, attempts=5, rounds=3, layout="rounds"))
    with TraceIndex(path) as index:
        index.update()
    return path


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def write_report(run, out):
    with TraceIndex(run) as index:
        index.update()
        out.write_text(viewer_page("test report", report_data(index)), encoding="utf-8")
    return out.as_uri()


def table_names(b: Browser) -> list[str]:
    return [row.get_attribute("data-name") for row in b.all("#theorems tbody tr")]


def expect_page(b: Browser, index: TraceIndex, **query) -> None:
    """The table shows what the index answers for the same filters."""
    page = index.theorem_page(TheoremQuery(**query))
    assert b.text("#total") == f"{page['total']:,} theorems"
    assert table_names(b) == [r["name"] for r in page["rows"]]


def exercise(b: Browser, url: str, run, shots) -> None:
    with TraceIndex(run) as index:
        b.open(url)
        expect_page(b, index)
        assert REPLAY_LABEL in b.text("#banner")
        b.choose("status", "proved")
        expect_page(b, index, status="proved")
        b.choose("round", "1")
        expect_page(b, index, status="proved", rounds=[1])
        b.choose("status", "not_attempted")
        expect_page(b, index, status="not_attempted", rounds=[1])
        b.choose("status", "any")
        b.choose("round", "")
        b.search("rewrite")
        expect_page(b, index, text="rewrite")
        b.choose("split", "test")
        expect_page(b, index, text="rewrite", split="test")
        b.screenshot(shots / "table.png")

        page = index.theorem_page(TheoremQuery(text="rewrite", split="test"))
        name = next(r["name"] for r in page["rows"] if r["proved"])
        row = next(r for r in b.all("#theorems tbody tr") if r.get_attribute("data-name") == name)
        b.act(lambda: row.find_element("css selector", "a").click())
        assert b.text("#theorem-name") == name
        thm = index.theorem(name, "rewrite")
        rows = b.all("#attempts tbody tr")
        assert len(rows) == len(thm["attempts"])
        assert len(b.all("#attempts .match-dot")) == len(thm["matches"])
        proved_rounds = {a["round"] for a in thm["attempts"] if a["outcome"] == "proved"}
        if len(proved_rounds) >= 2:
            assert len(b.all(".side-by-side .col")) == len(proved_rounds)
            assert REPLAY_LABEL in b.text(".side-by-side")

        proof = next(a for a in thm["attempts"] if a["outcome"] == "proved")
        b.act(lambda: b.one(f'#attempts tr[data-tid="{proof["tid"]}"]').click())
        shown = b.text("#trajectory")
        assert f"round {proof['round']} · attempt {proof['attempt']}" in shown
        assert REPLAY_LABEL in shown and "passed the whole-proof check" not in shown
        assert len(b.all("#trajectory .step.ok")) == proof["proof_len"]
        assert "Lean: no goals — proof complete" in shown
        traj = index.trajectory(proof["tid"])
        assert [e.text for e in b.all("#trajectory .tactic")] == [
            s["tactic"] for s in traj["steps"]
        ]
        assert traj["steps"][0]["state"] in b.text("#trajectory .state")  # Unicode intact
        b.screenshot(shots / "proof.png")

        b.choose("attempt_outcome", "failed")
        failed = [a for a in thm["attempts"] if a["outcome"] == "failed"]
        assert len(b.all("#attempts tbody tr")) == len(failed)
        if failed:
            worst = max(failed, key=lambda a: a["n_failed"])
            b.act(lambda: b.one(f'#attempts tr[data-tid="{worst["tid"]}"]').click())
            assert len(b.all("#trajectory .step.failed")) == worst["n_failed"]
            assert "✗ failed" in b.text("#trajectory")
            b.screenshot(shots / "failed.png")

        b.act(lambda: b.one('header nav a[href="#/summary"]').click())
        assert len(b.all(".fragment svg")) == 7 and REPLAY_LABEL in b.text(".fragment")
        files = index.meta()["files"]
        assert len(b.all("#files tbody tr")) == len(files) == 7  # theorems + 3 x 2 per round
        assert "steps kept for training" in b.text("#files")
        b.screenshot(shots / "summary.png")
        b.act(lambda: b.one('header nav a[href="#/rounds"]').click())
        assert "round 1 → round 2" in b.text(".fragment")
    assert b.errors() == []


def test_report_from_disk(run, browser, tmp_path):
    url = write_report(run, tmp_path / "report.html")
    exercise(browser, url, run, tmp_path)
    assert (tmp_path / "proof.png").stat().st_size > 10_000


def test_served_viewer_on_loopback(run, browser, tmp_path):
    server = start_server(run, port=0, refresh_s=0)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        exercise(browser, server.url, run, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "summary.png").stat().st_size > 10_000


QUERIES = [
    {},
    {"status": "failed"},
    {"round": "2", "status": "proved", "sort": "shortest"},
    {"round": "0", "status": "rejected"},
    {"status": "error", "sort": "attempts"},
    {"split": "train", "q": "simp", "sort": "proved"},
    {"q": "ℝ one", "sort": "name"},
    {"q": "⊢"},
    {"q": "hypothesis", "round": "1", "page": "2", "per_page": "5"},
]


def test_report_queries_match_the_index(run, browser, tmp_path):
    """The report answers filters in JavaScript, the server in SQL: the same rows, in order."""
    browser.open(write_report(run, tmp_path / "report.html"))
    with TraceIndex(run) as index:
        for q in QUERIES:
            got = browser.driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "api.theorems(arguments[0]).then(done, (e) => done(String(e)));",
                {"per_page": 50, **q},
            )
            want = index.theorem_page(
                TheoremQuery(
                    rounds=[int(q["round"])] if "round" in q else None,
                    split=q.get("split", ""),
                    status=q.get("status", "any"),
                    text=q.get("q", ""),
                    sort=q.get("sort", "order"),
                    page=int(q.get("page", 1)),
                    per_page=int(q.get("per_page", 50)),
                )  # fmt: skip
            )
            assert got == want, q
        name = index.theorem_page(TheoremQuery(status="proved"))["rows"][0]["name"]
        got = browser.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "api.theorem(arguments[0], 'rewrite').then(done, (e) => done(String(e)));",
            name,
        )
        assert got == index.theorem(name, "rewrite")


def test_lean_checked_proofs_are_marked(tmp_path, browser):
    run = tmp_path / "lean-run"
    write_fixture_run(run, FixtureSpec(theorems=5, attempts=3, checked_by=FIXTURE_LEAN_LABEL))
    url = write_report(run, tmp_path / "report.html")
    with TraceIndex(run) as index:
        name = index.theorem_page(TheoremQuery(status="proved"))["rows"][0]["name"]
    browser.open(f"{url}#/theorem/{name}?outcome=proved")
    tag = browser.text("#trajectory .verified-tag")
    assert tag == f"✓ passed the whole-proof check ({FIXTURE_LEAN_LABEL})"
    assert REPLAY_LABEL not in browser.text("body")
    browser.screenshot(tmp_path / "lean.png")
