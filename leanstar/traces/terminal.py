"""`leanstar traces show RUN_DIR [THEOREM]`: the trajectory view in a terminal (rich).

Without a theorem: the run summary (per-round table) and the first theorems with their status
per round. With one: its rounds, its proofs side by side when several rounds proved it, and one
attempt step by step: the goal, each sampled thought and tactic, Lean's answer, failed tactics
that were resampled in place. Record text is printed as plain text, never as rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from leanstar.records import REPLAY_LABEL
from leanstar.traces.index import TheoremQuery, TraceIndex
from leanstar.traces.session import command
from leanstar.traces.summary import checker_counts, round_table

ADVANCING = ("proof_state", "proof_finished")
STATUS_STYLE = {"proved": "green", "failed": "red", "rejected": "yellow", "error": "magenta"}


@command
def main(cfg: Any) -> int:
    from leanstar.traces.session import open_index

    console = Console()
    with open_index(cfg.run_dir, cfg.index, console) as index:
        if not cfg.theorem:
            show_summary(index, console, cfg.limit)
            return 0
        name = resolve_name(index, cfg.theorem, console)
        if name is None:
            return 2
        return show_theorem(index, name, console, cfg.round, cfg.attempt)


def resolve_name(index: TraceIndex, wanted: str, console: Console) -> str | None:
    """The theorem named `wanted`, or the only one whose name contains it."""
    if index.theorem(wanted) is not None:
        return wanted
    found = index.find_theorems(wanted, limit=11)
    if len(found) == 1:
        return found[0]
    if not found:
        console.print(
            Text(f"no theorem in {index.run_dir} has a name containing {wanted!r}", "red")
        )
    else:
        console.print(Text(f"{wanted!r} matches several theorems; give more of the name:", "red"))
        for n in found[:10]:
            console.print(Text(f"  {n}"))
        if len(found) > 10:
            console.print("  …")
    return None


def show_summary(index: TraceIndex, console: Console, limit: int) -> None:
    meta, led = index.meta(), index.ledger()
    console.rule(
        Text(f"{meta['name']}: {meta['theorems']:,} theorems, {meta['trajectories']:,} attempts")
    )
    if not meta["theorems"]:
        return
    for label, n in checker_counts(led).most_common():
        style = "magenta" if label == REPLAY_LABEL else "green"
        console.print(Text(f"{n:,} attempts checked by {label}", style))
    t = Table("round", "attempted", "proved", "rate", "new", "attempts", "ok", "rejected",
              "errors", "by replay", title="Per round",
              caption="attempted / proved / new: theorems (new: not proved in an earlier round); "
              "rate: proved / attempted; ok: proved attempts; by replay: proofs checked by "
              f"{REPLAY_LABEL}")  # fmt: skip
    for r in round_table(led):
        t.add_row(*map(str, (r["round"], r["attempted"], r["proved"])), f"{100 * r['pass_rate']:.1f}%",
                  *map(str, (r["new"], r["attempts"], r["proved_attempts"], r["rejected_attempts"],
                             r["error_attempts"], r["proofs_replay"])))  # fmt: skip
    console.print(t)
    page = index.theorem_page(TheoremQuery(per_page=max(1, min(limit, 1000))))
    t = Table(title=f"Theorems (first {len(page['rows'])} of {page['total']:,})",
              caption=f"(replay) = every proof of that round was checked by {REPLAY_LABEL}")  # fmt: skip
    t.add_column("theorem", overflow="fold", ratio=3)
    t.add_column("split")
    for r in meta["rounds"]:
        t.add_column(f"round {r}", ratio=1)
    for row in page["rows"]:
        t.add_row(Text(row["name"]), row["split"] or "—",
                  *(_cell_text(row["rounds"].get(str(r))) for r in meta["rounds"]))  # fmt: skip
    console.print(t)
    files = Table("file", "holds", "records", title="Record files")
    holds = {"proofs": "steps kept for training"}
    for f in meta["files"]:
        note = " (last line incomplete)" if f["partial"] else ""
        files.add_row(Text(f["path"] + note), holds.get(f["kind"], f["kind"]), f"{f['records']:,}")
    console.print(files)
    console.print("[dim]leanstar traces show RUN THEOREM shows one theorem's attempts step by step")


def _cell_text(cell: dict[str, Any] | None, short: bool = True) -> Text:
    if cell is None:
        return Text("not attempted", "dim")
    text = Text(
        f"{cell['status']} {cell['proved']}/{cell['attempts']}", STATUS_STYLE[cell["status"]]
    )
    if cell["replay_only"]:
        text.append(" (replay)" if short else f" {REPLAY_LABEL}", "magenta")
    return text


def show_theorem(index: TraceIndex, name: str, console: Console, rnd: int, attempt: int) -> int:
    t = index.theorem(name)
    head = [Text(name, "bold")]
    if t["split"]:
        head.append(Text(f"split: {t['split']}", "dim"))
    if t["statement"]:
        head.append(Panel(Text(t["statement"]), title="statement", title_align="left"))
    if t["goal"]:
        head.append(Panel(Text(t["goal"]), title="initial goal", title_align="left"))
    status = Text()
    for r, cell in t["rounds"].items():
        status.append(f"round {r}: ")
        status.append_text(_cell_text(cell, short=False))
        status.append("   ")
    head.append(status)
    console.print(Group(*head))
    _attempt_table(t, console)
    proofs = index.proofs(name)
    if len(proofs) >= 2:
        console.print(side_by_side(proofs))
    chosen = pick(t["attempts"], rnd, attempt)
    if chosen is None:
        console.print(Text(f"no attempt matches round {rnd}, attempt {attempt}", "red"))
        return 2
    console.print(trajectory_view(index.trajectory(chosen["tid"])))
    return 0


def _attempt_table(t: dict[str, Any], console: Console) -> None:
    table = Table("round", "attempts", "proved", "failed", "rejected", "error", "proved attempts",
                  title="Attempts")  # fmt: skip
    for r in t["rounds"]:
        mine = [a for a in t["attempts"] if a["round"] == int(r)]
        count = {o: sum(a["outcome"] == o for a in mine) for o in STATUS_STYLE}
        proved = [str(a["attempt"]) for a in mine if a["outcome"] == "proved"]
        listed = ", ".join(proved[:12]) + (" …" if len(proved) > 12 else "")
        table.add_row(r, str(len(mine)), *(str(count[o]) for o in STATUS_STYLE), listed or "—")
    console.print(table)


def pick(attempts: list[dict[str, Any]], rnd: int, attempt: int) -> dict[str, Any] | None:
    """The attempt asked for; by default the first proof of the latest round that has one."""
    pool = [a for a in attempts if rnd < 0 or a["round"] == rnd]
    if attempt >= 0:
        pool = [a for a in pool if a["attempt"] == attempt]
        return pool[-1] if pool else None
    if not pool:
        return None
    proved = [a for a in pool if a["outcome"] == "proved"]
    if proved:
        latest = max(a["round"] for a in proved)
        return min((a for a in proved if a["round"] == latest), key=lambda a: a["attempt"])
    latest = max(a["round"] for a in pool)
    return min((a for a in pool if a["round"] == latest), key=lambda a: a["attempt"])


def check_text(traj: dict[str, Any]) -> Text:
    """How the attempt was checked; replay and the whole-proof check always spelled out."""
    text = Text()
    if traj["checked_by"] == REPLAY_LABEL:
        text.append(REPLAY_LABEL, "bold magenta")
    else:
        text.append(f"checked by {traj['checked_by']}", "dim")
    verdict = traj.get("verdict")
    if (
        verdict
        and verdict["ok"]
        and REPLAY_LABEL not in (traj["checked_by"], verdict["checked_by"])
    ):
        text.append(f"  ✓ passed the whole-proof check ({verdict['checked_by']})", "bold green")
    elif verdict and not verdict["ok"]:
        text.append(f"  ✗ whole-proof check refused: {verdict['reason']}", "bold yellow")
    return text


def trajectory_view(traj: dict[str, Any]) -> Group:
    head = Text(f"round {traj['round']} · attempt {traj['attempt']} · ", "bold")
    head.append(traj["outcome"], STATUS_STYLE.get(traj["outcome"], ""))
    head.append("   ")
    head.append_text(check_text(traj))
    extra = Text(
        f"stop: {traj.get('stop_reason') or '—'} · {traj.get('elapsed_s', 0):.2f} s · "
        f"{traj.get('strategy', '')} · {traj.get('model') or 'model not recorded'} · {traj.get('source', '')}",
        "dim",
    )
    parts: list[Any] = [head, extra]
    if traj.get("proof"):
        parts.append(
            Panel(Text(traj["proof"]), title="proof", title_align="left", border_style="green")
        )
    groups: list[list[dict[str, Any]]] = []
    for step in traj["steps"]:
        if groups and groups[-1][0]["depth"] == step["depth"]:
            groups[-1].append(step)
        else:
            groups.append([step])
    for group in groups:
        parts.append(_depth_view(group))
    return Group(*parts)


def _depth_view(group: list[dict[str, Any]]) -> Panel:
    body: list[Any] = [
        Panel(Text(group[0]["state"]), title="goal", title_align="left", border_style="dim")
    ]
    for i, s in enumerate(group):
        ok = s["outcome"] in ADVANCING
        if ok:
            body.append(Text("✓ accepted", "bold green"))
        else:
            body.append(
                Text("✗ failed, resampled" if i < len(group) - 1 else "✗ failed", "bold red")
            )
        if i and s["state"] != group[0]["state"]:
            body.append(
                Panel(Text(s["state"]), title="goal", title_align="left", border_style="dim")
            )
        body.append(
            Text(s["thought"], "italic") if s.get("thought") else Text("(no thought)", "dim")
        )
        body.append(Text(s.get("tactic") or "(no tactic)", "bold cyan"))
        body.append(_answer(s))
        timing = f"sample {s.get('sample_s', 0):.2f} s · Lean {s.get('lean_s', 0):.2f} s"
        if s.get("logprob") is not None:
            timing += f" · log-prob {s['logprob']:.2f}"
        body.append(Text(timing, "dim"))
    n, ok = len(group), group[-1]["outcome"] in ADVANCING
    if ok:
        extra = f" · {n - 1} failed tactic{'s' * (n > 2)} resampled before it" if n > 1 else ""
    else:
        extra = f" · {n} tactic{'s' * (n > 1)} failed here; the attempt stopped"
    return Panel(Group(*body), title=f"step {group[0]['depth'] + 1}{extra}", title_align="left")


def _answer(s: dict[str, Any]) -> Text:
    outcome, message = s["outcome"], s.get("message") or ""
    if outcome == "proof_state":
        return Text("Lean: new goals\n", "green") + Text(s.get("state_after") or "")
    if outcome == "proof_finished":
        return Text("Lean: no goals — proof complete", "green")
    label = {
        "lean_error": "Lean: error",
        "timeout": "timeout",
        "env_failure": "environment failure (not the tactic's fault)",
        "unknown_to_replay": "unknown to replay: no recorded state for this tactic",
        "unparsable": "unparsable completion: no tactic found",
    }.get(outcome, outcome)
    return Text(label + ("\n" if message else ""), "red") + Text(message)


def side_by_side(proofs: list[dict[str, Any]]) -> Table:
    table = Table(title="Proofs by round, side by side", show_lines=True)
    for p in proofs:
        table.add_column(
            f"round {p['round']} · attempt {p['trajectory']['attempt']} ({_proofs(p['proofs'])})"
        )
    cols = []
    for p in proofs:
        t = p["trajectory"]
        lines: list[Any] = [check_text(t)]
        for s in t["steps"]:
            if s["outcome"] in ADVANCING:
                lines.append(
                    Text(s["thought"], "italic")
                    if s.get("thought")
                    else Text("(no thought)", "dim")
                )
                lines.append(Text(s["tactic"] or "", "bold cyan"))
        cols.append(Group(*lines))
    table.add_row(*cols)
    return table


def _proofs(n: int) -> str:
    return f"{n} proof" if n == 1 else f"{n} proofs"
