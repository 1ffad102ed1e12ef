"""`leanstar traces serve RUN_DIR`: the viewer over a run of any size, on 127.0.0.1 only.

Pages are answered from the run's SQLite index, one query per view, so the first page and any
filter take milliseconds even at 10,000 theorems x 64 attempts (docs/traces.md has the
figures). A background thread indexes records the run appends while the server is up. The
server binds to the loopback address and refuses requests whose Host header names anything
else, so a web page elsewhere cannot read the run through the browser (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from leanstar.traces.compare import rounds_html
from leanstar.traces.index import IndexBusy, TheoremQuery, TraceIndex, default_index_path
from leanstar.traces.page import viewer_page
from leanstar.traces.session import command
from leanstar.traces.summary import summary_html

HOST = "127.0.0.1"


class TraceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, run_dir: Path, index_path: Path, port: int, refresh_s: float) -> None:
        self.run_dir, self.index_path = run_dir, index_path
        self.pool: queue.SimpleQueue[TraceIndex] = queue.SimpleQueue()
        self.cache: dict[str, tuple[int, Any]] = {}
        self.cache_lock = threading.Lock()
        self.stop = threading.Event()
        super().__init__((HOST, port), Handler)
        self.page = viewer_page(f"{run_dir.resolve().name} · leanstar traces").encode()
        self.refresher = None
        if refresh_s > 0:
            self.refresher = threading.Thread(target=self._refresh, args=(refresh_s,), daemon=True)
            self.refresher.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    @contextlib.contextmanager
    def connection(self) -> Iterator[TraceIndex]:
        """A connection to the index from the pool (kept open: SQLite's cache stays warm)."""
        try:
            index = self.pool.get_nowait()
        except queue.Empty:
            index = TraceIndex(self.run_dir, self.index_path)
        try:
            yield index
        finally:
            self.pool.put(index)

    def cached(self, index: TraceIndex, key: str, build) -> Any:
        """`build(index)`, reused until the index changes."""
        version = index.meta_version()
        with self.cache_lock:
            hit = self.cache.get(key)
        if hit and hit[0] == version:
            return hit[1]
        value = build(index)
        with self.cache_lock:
            self.cache[key] = (version, value)
        return value

    def _refresh(self, every_s: float) -> None:
        index = TraceIndex(self.run_dir, self.index_path)
        try:
            while not self.stop.wait(every_s):
                # Another process indexing the run is fine: its work shows up all the same.
                with contextlib.suppress(IndexBusy):
                    index.update(wait=False)
        finally:
            index.close()

    def server_close(self) -> None:
        self.stop.set()
        super().server_close()
        while not self.pool.empty():
            self.pool.get_nowait().close()


class Handler(BaseHTTPRequestHandler):
    server: TraceServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"unexpected Host header", "text/plain")
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = ROUTES.get(url.path)
        if url.path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        if route is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
        try:
            with self.server.connection() as index:
                body = route(self.server, index, params)
        except (KeyError, ValueError) as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        if body is None:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        self._json(HTTPStatus.OK, body)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in (HOST, "localhost")

    def _json(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, data, "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request would drown the terminal


def _theorems(server: TraceServer, index: TraceIndex, p: dict[str, str]) -> dict[str, Any]:
    query = TheoremQuery(
        rounds=[int(p["round"])] if p.get("round", "") != "" else None,
        split=p.get("split", ""),
        status=p.get("status", "any"),
        text=p.get("q", ""),
        sort=p.get("sort", "order"),
        page=int(p.get("page", 1)),
        per_page=int(p.get("per_page", 50)),
    )
    return index.theorem_page(query)


ROUTES = {
    "/api/meta": lambda s, i, p: i.meta(),
    "/api/theorems": _theorems,
    "/api/theorem": lambda s, i, p: i.theorem(p["name"], p.get("q", "")),
    "/api/trajectory": lambda s, i, p: i.trajectory(int(p["tid"])),
    "/api/proofs": lambda s, i, p: i.proofs(p["name"]),
    "/api/summary": lambda s, i, p: {
        "html": s.cached(i, "summary", lambda x: summary_html(x.ledger()))
    },
    "/api/rounds": lambda s, i, p: {
        "html": s.cached(i, "rounds", lambda x: rounds_html(x.ledger()))
    },
}


def start_server(
    run_dir: str | Path, index_path: str | Path | None = None, port: int = 0, refresh_s: float = 5.0
) -> TraceServer:
    """A started server (in a background thread) over an index that is already up to date."""
    run = Path(run_dir)
    path = Path(index_path) if index_path else default_index_path(run)
    server = TraceServer(run, path, port, refresh_s)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@command
def main(cfg: Any) -> int:
    from rich.console import Console

    from leanstar.traces.session import open_index

    console = Console()
    with open_index(cfg.run_dir, cfg.index, console) as index:
        meta, path = index.meta(), index.path
    try:
        server = start_server(cfg.run_dir, path, cfg.port, cfg.refresh_s)
    except OSError as e:
        console.print(f"[red]cannot listen on {HOST}:{cfg.port}: {e} (try --port 0)")
        return 2
    console.print(
        f"serving {meta['theorems']:,} theorems, {meta['trajectories']:,} trajectories of "
        f"{cfg.run_dir} at [bold]{server.url}[/] (127.0.0.1 only; Ctrl-C stops)"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.shutdown()
        server.server_close()
    return 0
