"""Small inline-SVG charts: grouped vertical bars and horizontal bars.

Written here rather than with matplotlib so a report stays one small self-contained file that
renders offline, and the server can draw a plot in a millisecond. Every bar carries a
`<title>` with its exact value (shown on hover); text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f")
Fmt = Callable[[float], str]


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    fmt: Fmt = _num,
    y_max: float | None = None,
    note: str = "",
    warn: bool = False,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    width, height = 560, 270
    left, right, bottom = 52, 12, 58 if len(categories) > 6 else 40
    top = 52 if len(series) > 1 else 38
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs]
    highest = max(values, default=0)
    if y_max is None and all(float(v).is_integer() for v in values):
        highest = max(highest, 4)  # counts: whole-number grid lines
    peak = y_max if y_max is not None else nice_ceiling(highest)
    out = [_open(width, height, title), _title(title, note, warn)]
    for i in range(5):  # grid and y labels
        y = top + plot_h - plot_h * i / 4
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{escape(fmt(peak * i / 4))}</text>")  # fmt: skip
    n_cat, n_ser = max(len(categories), 1), max(len(series), 1)
    group = plot_w / n_cat
    bar = group * 0.8 / n_ser
    for c, cat in enumerate(categories):
        x0 = left + group * c + group * 0.1
        for s, (name, vs) in enumerate(series):
            v = vs[c] if c < len(vs) else 0
            h = plot_h * min(v / peak, 1.0) if peak else 0
            x, y = x0 + bar * s, top + plot_h - h
            label = f"{name} · {cat}: {fmt(v)}" if name else f"{cat}: {fmt(v)}"
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(label)}</title></rect>'
            )
        out.append(_x_label(x0 + group * 0.4, top + plot_h, cat, rotate=len(categories) > 6))
    if len(series) > 1:
        out.append(_legend([name for name, _ in series], width))
    out.append("</svg>")
    return "".join(out)


def hbar_chart(
    title: str,
    items: Sequence[tuple[str, float]],
    fmt: Fmt = _num,
    note: str = "",
    warn: bool = False,
) -> str:
    """Horizontal bars, one per (label, value), longest label room on the left."""
    row, top, left, right = 20, 34, 200, 70
    width = 560
    height = top + row * max(len(items), 1) + 10
    peak = max((v for _, v in items), default=0) or 1
    out = [_open(width, height, title), _title(title, note, warn)]
    for i, (label, v) in enumerate(items):
        y = top + row * i
        w = (width - left - right) * v / peak
        short = label if len(label) <= 30 else label[:29] + "…"
        out.append(
            f'<text class="tick" x="{left - 6}" y="{y + 14}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {escape(fmt(v))}</title></rect>'
            f'<text class="tick" x="{left + w + 4:.1f}" y="{y + 14}">{escape(fmt(v))}</text>'
        )
    if not items:
        out.append(f'<text class="tick" x="{left}" y="{top + 14}">nothing to show</text>')
    out.append("</svg>")
    return "".join(out)


def nice_ceiling(value: float) -> float:
    """The smallest 4 x (1, 2, 2.5 or 5 x 10^k) at or above `value`: round grid lines."""
    if value <= 0:
        return 4.0
    step = value / 4
    power = 10 ** math.floor(math.log10(step))
    for mult in (1, 2, 2.5, 5, 10):
        if mult * power >= step - 1e-12:
            return 4 * mult * power
    return 4 * 10 * power


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
    )


def _title(title: str, note: str, warn: bool = False) -> str:
    text = f'<text class="chart-title" x="8" y="18">{escape(title)}</text>'
    if note:
        cls = "chart-note warn" if warn else "chart-note"
        text += f'<text class="{cls}" x="8" y="30">{escape(note)}</text>'
    return text


def _x_label(x: float, y: float, text: str, rotate: bool) -> str:
    if rotate:
        return (
            f'<text class="tick" transform="translate({x:.1f},{y + 10:.1f}) rotate(-35)" '
            f'text-anchor="end">{escape(text)}</text>'
        )
    return f'<text class="tick" x="{x:.1f}" y="{y + 16:.1f}" text-anchor="middle">{escape(text)}</text>'


def _legend(names: Sequence[str], width: int) -> str:
    out, x = [], width - 12
    for i, name in reversed(list(enumerate(names))):
        x -= 20 + 6 * len(name)
        out.append(
            f'<rect x="{x}" y="35" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text class="tick" x="{x + 14}" y="44">{escape(name)}</text>'
        )
    return "".join(out)
