"""Analyses across rounds or runs: theorems gained and lost, thought length and tactic shifts.

    leanstar traces compare RUN_A RUN_B        two runs (every round of each)
    leanstar traces compare RUN:0 RUN:1        two rounds
    leanstar traces compare RUN                each round against the one before

"Tactics that appear only with thoughts" are the tactics found in the proofs of the side that
writes thoughts and never in the proofs of the side that does not (a Lean-STaR prover against
its tactic-only baseline); for two sides that both think, the same table lists the tactics
only one side's proofs use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from leanstar.traces.ledger import (
    IN_PROOFS,
    IN_PROOFS_WITH_THOUGHT,
    PROOF_LEN,
    PROOF_THOUGHT,
    THOUGHT,
    THOUGHT_BIN,
    USES,
    WITH_THOUGHT,
    Ledger,
    quantile,
)
from leanstar.traces.session import command
from leanstar.traces.summary import html_table


@dataclass
class Side:
    label: str
    ledger: Ledger  # restricted to the rounds this side stands for

    @property
    def proved(self) -> set[str]:
        return self.ledger.proved()

    @property
    def attempted(self) -> set[str]:
        return self.ledger.attempted()

    @property
    def has_thoughts(self) -> bool:
        with_thought = sum(c[WITH_THOUGHT] for c in self.ledger.tactics.values())
        return with_thought > sum(self.ledger.no_thought_steps.values())


@dataclass
class Comparison:
    a: Side
    b: Side
    gained: list[str] = field(default_factory=list)  # proved by B; A tried and failed
    lost: list[str] = field(default_factory=list)  # proved by A; B tried and failed
    new_in_b: list[str] = field(default_factory=list)  # proved by B; A never tried
    dropped_by_b: list[str] = field(default_factory=list)  # proved by A; B never tried
    kept: int = 0
    measures: list[tuple[str, str, str, str]] = field(default_factory=list)
    tactics: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    only_a: list[tuple[str, int]] = field(default_factory=list)
    only_b: list[tuple[str, int]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.a.label} → {self.b.label}"

    def name_lists(self) -> list[tuple[str, list[str]]]:
        a, b = self.a.label, self.b.label
        return [
            (f"Gained: proved by {b}; {a} attempted them and failed", self.gained),
            (f"Lost: proved by {a}; {b} attempted them and failed", self.lost),
            (f"Proved by {b}, not attempted by {a}", self.new_in_b),
            (f"Proved by {a}, not attempted by {b}", self.dropped_by_b),
        ]

    def only_title(self, side: str) -> str:
        mine, other = (self.b, self.a) if side == "b" else (self.a, self.b)
        if mine.has_thoughts and not other.has_thoughts:
            return f"Tactics that appear only with thoughts (in {mine.label}'s proofs, never in {other.label}'s)"
        return f"Tactics in {mine.label}'s proofs only"


def compare(a: Side, b: Side, top: int = 15) -> Comparison:
    c = Comparison(a, b)
    c.gained = sorted((b.proved - a.proved) & a.attempted)
    c.lost = sorted((a.proved - b.proved) & b.attempted)
    c.new_in_b = sorted(b.proved - a.attempted)
    c.dropped_by_b = sorted(a.proved - b.attempted)
    c.kept = len(a.proved & b.proved)
    c.measures = _measures(a, b)
    ta, tb = a.ledger.tactic_totals(), b.ledger.tactic_totals()
    c.tactics = _tactic_shift(ta, tb, top)
    c.only_a = _only(ta, tb)
    c.only_b = _only(tb, ta)
    return c


def round_comparisons(led: Ledger, top: int = 15) -> list[Comparison]:
    """Each round against the one before it."""
    rounds = led.rounds()
    return [
        compare(
            Side(f"round {r0}", led.restricted([r0])),
            Side(f"round {r1}", led.restricted([r1])),
            top,
        )
        for r0, r1 in zip(rounds, rounds[1:], strict=False)
    ]


def thought_only_tactics(led: Ledger) -> list[tuple[str, int]]:
    """Within one run whose proofs mix steps with and without thoughts: tactics every one of
    whose proof steps had a thought. Empty when every proof step had one (or none did)."""
    totals = led.tactic_totals()
    bare = sum(c[IN_PROOFS] - c[IN_PROOFS_WITH_THOUGHT] for c in totals.values())
    if not bare:
        return []
    return sorted(
        (
            (h, c[IN_PROOFS])
            for h, c in totals.items()
            if c[IN_PROOFS] and c[IN_PROOFS] == c[IN_PROOFS_WITH_THOUGHT]
        ),
        key=lambda x: (-x[1], x[0]),
    )


def _measures(a: Side, b: Side) -> list[tuple[str, str, str, str]]:
    rows = []

    def add(name: str, va: float | None, vb: float | None, fmt: str = "{:.1f}") -> None:
        fa = "—" if va is None else fmt.format(va)
        fb = "—" if vb is None else fmt.format(vb)
        delta = "—" if va is None or vb is None else ("+" if vb >= va else "") + fmt.format(vb - va)
        rows.append((name, fa, fb, delta))

    def rate(s: Side) -> float | None:
        return 100 * len(s.proved) / len(s.attempted) if s.attempted else None

    add("theorems proved / attempted (%)", rate(a), rate(b))
    add("theorems proved", len(a.proved), len(b.proved), "{:.0f}")
    for s_metric, label in ((THOUGHT, "every step"), (PROOF_THOUGHT, "proof steps")):
        add(
            f"thought length, {label}: mean (chars)",
            a.ledger.mean(s_metric),
            b.ledger.mean(s_metric),
        )
        for q, qn in ((0.5, "median"), (0.9, "90th percentile")):
            add(
                f"thought length, {label}: {qn} ≈ (chars, 10-char bins)",
                quantile(a.ledger.histogram(s_metric), q, THOUGHT_BIN),
                quantile(b.ledger.histogram(s_metric), q, THOUGHT_BIN),
                "{:.0f}",
            )
    add("tactics per proof: mean", a.ledger.mean(PROOF_LEN), b.ledger.mean(PROOF_LEN), "{:.2f}")
    add(
        "tactics per proof: median",
        quantile(a.ledger.histogram(PROOF_LEN), 0.5, 1),
        quantile(b.ledger.histogram(PROOF_LEN), 0.5, 1),
        "{:.0f}",
    )
    add("steps with a thought (%)", _thought_share(a), _thought_share(b))
    return rows


def _thought_share(s: Side) -> float | None:
    with_thought = sum(c[WITH_THOUGHT] for c in s.ledger.tactics.values())
    total = sum(c[USES] for c in s.ledger.tactics.values())
    return 100 * with_thought / total if total else None


def _tactic_shift(ta: dict, tb: dict, top: int) -> list[tuple[str, float, float, float, float]]:
    def shares(t: dict, col: int) -> dict[str, float]:
        total = sum(c[col] for c in t.values())
        return {h: 100 * c[col] / total for h, c in t.items()} if total else {}

    pa, pb = shares(ta, IN_PROOFS), shares(tb, IN_PROOFS)
    sa, sb = shares(ta, USES), shares(tb, USES)
    heads = sorted(set(pa) | set(pb), key=lambda h: (-max(pa.get(h, 0), pb.get(h, 0)), h))
    heads = [h for h in heads if pa.get(h, 0) or pb.get(h, 0)][:top]
    return [(h, pa.get(h, 0.0), pb.get(h, 0.0), sa.get(h, 0.0), sb.get(h, 0.0)) for h in heads]


def _only(mine: dict, other: dict) -> list[tuple[str, int]]:
    return sorted(
        (
            (h, c[IN_PROOFS])
            for h, c in mine.items()
            if c[IN_PROOFS] and not other.get(h, [0] * 5)[IN_PROOFS]
        ),
        key=lambda x: (-x[1], x[0]),
    )


# ---------------------------------------------------------------- rendering


def comparison_html(c: Comparison, names_limit: int = 500) -> str:
    parts = [f"<h3>{escape(c.title)}</h3>"]
    parts.append(
        html_table(("measure", c.a.label, c.b.label, "change"), [list(m) for m in c.measures])
    )
    parts.append(
        f"<p><b>{len(c.gained)}</b> theorems gained, <b>{len(c.lost)}</b> lost, "
        f"<b>{c.kept}</b> proved by both.</p>"
    )
    for title, names in c.name_lists():
        if names or title.startswith(("Gained", "Lost")):
            parts.append(_names_html(title, names, names_limit))
    parts.append("<h4>Tactic choice: share of proof steps and of sampled steps (%)</h4>")
    parts.append(
        html_table(
            (
                "tactic",
                f"proofs, {c.a.label}",
                f"proofs, {c.b.label}",
                "change (points)",
                f"sampled, {c.a.label}",
                f"sampled, {c.b.label}",
            ),
            [
                [h, f"{pa:.1f}", f"{pb:.1f}", f"{pb - pa:+.1f}", f"{sa:.1f}", f"{sb:.1f}"]
                for h, pa, pb, sa, sb in c.tactics
            ],
        )  # fmt: skip
    )
    for side, items in (("b", c.only_b), ("a", c.only_a)):
        parts.append(f"<h4>{escape(c.only_title(side))}</h4>")
        parts.append(
            html_table(("tactic", "proof steps"), [list(x) for x in items])
            if items
            else "<p>none</p>"
        )
    return '<section class="comparison">' + "".join(parts) + "</section>"


def _names_html(title: str, names: list[str], limit: int) -> str:
    if not names:
        return f"<h4>{escape(title)} (0)</h4><p>none</p>"
    items = [
        f'<li><a class="thm-link" href="#/theorem/{escape(_quote(n))}">{escape(n)}</a></li>'
        for n in names[:limit]
    ]
    more = f"<li class='muted'>… and {len(names) - limit} more</li>" if len(names) > limit else ""
    return f'<h4>{escape(title)} ({len(names)})</h4><ul class="names">{"".join(items)}{more}</ul>'


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def rounds_html(led: Ledger) -> str:
    comps = round_comparisons(led)
    if not comps:
        return "<p>This run has a single round: nothing to compare. Compare two runs with <code>leanstar traces compare RUN_A RUN_B</code>.</p>"
    return "".join(comparison_html(c) for c in comps) + _thought_only_html(led)


def _thought_only_html(led: Ledger) -> str:
    items = thought_only_tactics(led)
    if not items:
        return ""
    return "<h3>Tactics whose proof steps always came with a thought</h3>" + html_table(
        ("tactic", "proof steps"), [list(x) for x in items]
    )


def print_comparison(c: Comparison, console: Any, names_limit: int = 20) -> None:
    from rich.table import Table
    from rich.text import Text

    console.rule(f"[bold]{c.title}")
    t = Table("measure", c.a.label, c.b.label, "change", title="Proofs and thoughts")
    for row in c.measures:
        t.add_row(*row)
    console.print(t)
    for title, names in c.name_lists():
        if not names and not title.startswith(("Gained", "Lost")):
            continue
        t = Table("theorem", title=f"{title} ({len(names)})")
        for n in names[:names_limit]:
            t.add_row(Text(n))
        if len(names) > names_limit:
            t.add_row(Text(f"… and {len(names) - names_limit} more (--names N lists more)", "dim"))
        console.print(t)
    t = Table("tactic", f"proofs {c.a.label} %", f"proofs {c.b.label} %", "Δ points",
              f"sampled {c.a.label} %", f"sampled {c.b.label} %", title="Tactic choice")  # fmt: skip
    for h, pa, pb, sa, sb in c.tactics:
        t.add_row(h, f"{pa:.1f}", f"{pb:.1f}", f"{pb - pa:+.1f}", f"{sa:.1f}", f"{sb:.1f}")
    console.print(t)
    for side, items in (("b", c.only_b), ("a", c.only_a)):
        t = Table("tactic", "proof steps", title=c.only_title(side))
        for h, n in items[:names_limit]:
            t.add_row(h, str(n))
        if not items:
            t.add_row("[dim]none[/]", "")
        console.print(t)


@command
def main(cfg: Any) -> int:
    from rich.console import Console

    from leanstar.traces.runfiles import parse_run_spec
    from leanstar.traces.session import open_index

    console = Console()
    if not cfg.run_a:
        console.print("[red]leanstar traces compare: give RUN_A (and RUN_B, or RUN:K for a round)")
        return 2
    sides: list[Side] = []
    comps: list[Comparison]
    for spec in filter(None, (cfg.run_a, cfg.run_b)):
        run, rnd = parse_run_spec(spec)
        with open_index(run, "", console) as index:
            led = index.ledger()
        if rnd is not None:
            if rnd not in led.rounds():
                console.print(f"[red]{run}: no round {rnd} (rounds: {led.rounds()})")
                return 2
            led = led.restricted([rnd])
        sides.append(Side(spec, led))
    if len(sides) == 2:
        comps = [compare(*sides, top=cfg.top)]
    else:
        comps = round_comparisons(sides[0].ledger, top=cfg.top)
        if not comps:
            console.print(f"{cfg.run_a} has a single round: give a second run to compare with.")
            return 2
    for c in comps:
        print_comparison(c, console, cfg.names)
    if cfg.out:
        from leanstar.traces.page import standalone_page

        body = "".join(comparison_html(c) for c in comps)
        Path(cfg.out).write_text(
            standalone_page(f"compare {' vs '.join(s.label for s in sides)}", body),
            encoding="utf-8",
        )
        console.print(f"wrote {cfg.out}")
    return 0
