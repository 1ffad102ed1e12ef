"""The run summary: a table per round and the plots, from a `Ledger`.

Pass rate per round, new proofs per round, thought length and proof length distributions,
most common tactics and error kinds. Shown by `report`, `serve` (as an HTML fragment) and
`show` (the round table, in the terminal).
"""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

from leanstar.records import REPLAY_LABEL
from leanstar.traces import plots
from leanstar.traces.ledger import (
    FAILS,
    IN_PROOFS,
    PROOF_LEN,
    PROOF_THOUGHT,
    THOUGHT,
    THOUGHT_BIN,
    USES,
    Ledger,
    quantile,
)

DISPLAY_BIN = 50  # characters per bar of the thought-length plot
DISPLAY_MAX = 600  # thoughts longer than this share the last bar


def round_table(led: Ledger) -> list[dict[str, Any]]:
    """One row per round: theorems attempted / proved, new proofs, attempts by outcome."""
    rows, earlier = [], set()
    for rnd in led.rounds():
        cells = {t: c for (t, r), c in led.cells.items() if r == rnd}
        proved = {t for t, c in cells.items() if c.proved}
        outcomes = {o: 0 for o in ("proved", "failed", "rejected", "error")}
        replay = lean = 0
        for (r, outcome, is_replay), n in led.outcomes.items():
            if r == rnd:
                outcomes[outcome] += n
                if outcome == "proved":
                    replay += n if is_replay else 0
                    lean += 0 if is_replay else n
        rows.append({
            "round": rnd,
            "attempted": len(cells),
            "proved": len(proved),
            "pass_rate": len(proved) / len(cells) if cells else 0.0,
            "new": len(proved - earlier),
            "attempts": sum(outcomes.values()),
            "proved_attempts": outcomes["proved"],
            "failed_attempts": outcomes["failed"],
            "rejected_attempts": outcomes["rejected"],
            "error_attempts": outcomes["error"],
            "proofs_replay": replay,
            "proofs_lean": lean,
        })  # fmt: skip
        earlier |= proved
    return rows


def checker_counts(led: Ledger) -> Counter:
    out: Counter = Counter()
    for (_, label), n in led.checkers.items():
        out[label] += n
    return out


def summary_html(led: Ledger, title: str = "") -> str:
    """The summary view as an HTML fragment (tables and inline SVG plots)."""
    rows = round_table(led)
    labels = [f"round {r['round']}" for r in rows]
    replay = sum(r["proofs_replay"] for r in rows)
    note = f"{replay} proofs: {REPLAY_LABEL}" if replay else ""
    parts = [f"<h2>{escape(title)}</h2>" if title else "", _checkers(led), _round_table(rows)]
    charts = [
        plots.bar_chart(
            "Theorems proved / attempted, per round",
            labels,
            [("", [100 * r["pass_rate"] for r in rows])],
            fmt=lambda v: f"{v:.1f}%",
            y_max=100,
            note=note,
            warn=bool(replay),
        ),
        plots.bar_chart(
            "New proofs per round (theorems not proved in an earlier round)",
            labels,
            [("", [r["new"] for r in rows])],
            note=note,
            warn=bool(replay),
        ),
        _thought_chart(led, THOUGHT, "Thought length, every sampled step (share of steps)"),
        _thought_chart(led, PROOF_THOUGHT, "Thought length, steps of proofs (share of steps)"),
        _proof_len_chart(led, note, bool(replay)),
        _tactic_chart(led),
        _error_chart(led),
    ]
    parts.append(
        '<div class="plots">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"
    )
    parts.append(_tactic_table(led))
    return "".join(parts)


def _checkers(led: Ledger) -> str:
    items = []
    for label, n in checker_counts(led).most_common():
        cls = "replay" if label == REPLAY_LABEL else "lean"
        items.append(f'<li class="{cls}"><b>{n:,}</b> attempts checked by {escape(label)}</li>')
    return f'<ul class="checkers">{"".join(items)}</ul>' if items else ""


def _round_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "round", "theorems attempted", "proved", "proved / attempted", "new proofs", "attempts",
        "proved attempts", "rejected", "errors", "proofs by replay (not checked by Lean)",
        "proofs checked by Lean",
    )  # fmt: skip
    body = [
        [r["round"], r["attempted"], r["proved"], f"{100 * r['pass_rate']:.1f}%", r["new"],
         r["attempts"], r["proved_attempts"], r["rejected_attempts"], r["error_attempts"],
         r["proofs_replay"], r["proofs_lean"]]
        for r in rows
    ]  # fmt: skip
    return html_table(head, body, cls="data rounds")


def _thought_chart(led: Ledger, metric: str, title: str) -> str:
    n_bars = DISPLAY_MAX // DISPLAY_BIN + 1
    cats = [f"{i * DISPLAY_BIN}–{(i + 1) * DISPLAY_BIN - 1}" for i in range(n_bars - 1)]
    cats.append(f"{DISPLAY_MAX}+")
    series = []
    for rnd in led.rounds():
        hist = led.histogram(metric, [rnd])
        bars = [0.0] * n_bars
        for b, n in hist.items():
            bars[min(b * THOUGHT_BIN // DISPLAY_BIN, n_bars - 1)] += n
        total = sum(bars)
        if total:
            series.append((f"round {rnd}", [100 * v / total for v in bars]))
    mean = led.mean(metric)
    median = quantile(led.histogram(metric), 0.5, THOUGHT_BIN)
    note = (
        f"characters; mean {mean:.0f}, median ≈ {median:.0f} (10-character bins), all rounds"
        if mean is not None
        else "no thoughts recorded"
    )
    return plots.bar_chart(title, cats, series, fmt=lambda v: f"{v:.1f}%", note=note)


def _proof_len_chart(led: Ledger, note: str, warn: bool) -> str:
    hist = led.histogram(PROOF_LEN)
    top = max(hist, default=0)
    cats = [str(n) for n in range(1, max(top, 1) + 1)]
    series = [
        (f"round {rnd}", [led.histogram(PROOF_LEN, [rnd]).get(n, 0) for n in range(1, top + 1)])
        for rnd in led.rounds()
    ]
    return plots.bar_chart(
        "Tactics per proof (proved attempts)", cats, series, note=note, warn=warn
    )


def _tactic_chart(led: Ledger) -> str:
    totals = led.tactic_totals()
    top = sorted(totals.items(), key=lambda kv: (-kv[1][IN_PROOFS], kv[0]))[:15]
    return plots.hbar_chart(
        "Most common tactics in proofs (steps, all rounds)",
        [(head, c[IN_PROOFS]) for head, c in top if c[IN_PROOFS]],
    )


def _error_chart(led: Ledger) -> str:
    return plots.hbar_chart(
        "Why steps failed (error kinds, all rounds)", led.error_totals().most_common(12)
    )


def _tactic_table(led: Ledger) -> str:
    totals = led.tactic_totals()
    top = sorted(totals.items(), key=lambda kv: (-kv[1][USES], kv[0]))[:25]
    body = [
        [head, c[USES], c[FAILS], f"{100 * c[FAILS] / c[USES]:.0f}%", c[IN_PROOFS]]
        for head, c in top
    ]
    head = ("tactic", "sampled", "failed", "failure rate", "in proofs")
    return "<h3>Tactics sampled (all rounds)</h3>" + html_table(head, body, cls="data")


def html_table(head: tuple[str, ...] | list[str], body: list[list[Any]], cls: str = "data") -> str:
    th = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    trs = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in body
    )
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "—" if v is None else str(v)
