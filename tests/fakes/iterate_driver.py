"""Runs `leanstar iterate` with the steered sampler in place of the prover's, for the
kill/resume test: `python tests/fakes/iterate_driver.py CONFIG.yaml [DELAY_S]`.

The sampler answers each recorded state with its ground-truth tactic (deterministically), so
an interrupted run and an uninterrupted one must end with the same records; training is real
(the tiny model, a few steps)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from leanstar.config import load_config  # noqa: E402
from leanstar.data import load_leandojo  # noqa: E402
from leanstar.search import backends  # noqa: E402
from leanstar.train.config import IterateConfig  # noqa: E402
from leanstar.train.iterate import run_iterate  # noqa: E402
from tests.fakes.prover import SteeredGenerator  # noqa: E402

if __name__ == "__main__":
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    theorems = load_leandojo("bundled:leandojo-benchmark4-sample.json")
    backends.build_generator = lambda cfg: SteeredGenerator(theorems, delay_s=delay)
    run_iterate(load_config(IterateConfig, sys.argv[1]))
