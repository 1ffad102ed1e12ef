"""Configs of `leanstar traces report|serve|show|compare`."""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.config import option


@dataclass
class TracesReportConfig:
    run_dir: str = option("", "run directory to report on", positional=True)
    out: str = option("", "HTML file to write ('' = RUN_DIR/traces.html)")


@dataclass
class TracesServeConfig:
    run_dir: str = option("", "run directory to serve", positional=True)
    port: int = option(8765, "port on 127.0.0.1")


@dataclass
class TracesShowConfig:
    run_dir: str = option("", "run directory", positional=True)
    theorem: str = option("", "theorem to show ('' = a summary of all)", positional=True, nargs="?")


@dataclass
class TracesCompareConfig:
    run_a: str = option("", "earlier run directory (or RUN:round)", positional=True)
    run_b: str = option("", "later run directory (or RUN:round)", positional=True)
