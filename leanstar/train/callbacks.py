"""Trainer callbacks of `leanstar sft`: metrics to the run directory, a clean stop on signals."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from leanstar.jsonl import JsonlWriter


class MetricsLog(TrainerCallback):
    """Each Trainer log as one line of RUN_DIR/metrics.jsonl (main process only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: JsonlWriter | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self._writer is None:
            self._writer = JsonlWriter(self.path)
        self._writer.write({"step": state.global_step, "epoch": state.epoch, **logs})

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class StopOnSignal(TrainerCallback):
    """On the first Ctrl-C or SIGTERM, save a checkpoint at the end of the step and stop.

    A second signal interrupts at once. Single-process only: under a distributed launch the
    processes would stop at different steps.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.fired = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.fired:
            raise KeyboardInterrupt
        self.fired = True
        print(
            "\nleanstar sft: stopping after this step and saving a checkpoint "
            "(signal again to stop at once)",
            file=sys.stderr,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.fired:
            control.should_save = True
            control.should_training_stop = True
        return control
