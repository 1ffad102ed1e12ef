"""The viewer page (static/viewer.html + .css + .js), assembled into one HTML document.

The report embeds the run's data as JSON in the page; the server sends the page without data
and the script asks /api/* instead. Nothing is loaded from the network in either case.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib import resources
from typing import Any


@cache
def _asset(name: str) -> str:
    return resources.files("leanstar.traces").joinpath("static", name).read_text(encoding="utf-8")


def viewer_page(title: str, data: dict[str, Any] | None = None) -> str:
    """The viewer; with `data` it is a self-contained report, without it a served page."""
    blob = ""
    if data is not None:
        # "<" escaped everywhere so no record text can close the script element.
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
        blob = f'<script type="application/json" id="leanstar-data">{text}</script>'
    return (
        _asset("viewer.html")
        .replace("__TITLE__", escape(title))
        .replace("__CSS__", _asset("viewer.css"))
        .replace("__DATA__", blob)
        .replace("__JS__", _asset("viewer.js"))
    )


def standalone_page(title: str, body_html: str) -> str:
    """A static page (no script) around an HTML fragment, styled like the viewer."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_asset('viewer.css')}</style></head>"
        f"<body><header><h1>{escape(title)}</h1></header><main>{body_html}</main></body></html>"
    )
