"""`leanstar quickstart`: the whole pipeline on the bundled sample, on CPU, in minutes."""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.config import option


@dataclass
class QuickstartConfig:
    run_dir: str = option("runs/quickstart", "run directory for every stage of the demo")
