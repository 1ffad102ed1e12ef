"""Run directories: where a stage writes everything, and how a killed run knows where it was.

    runs/NAME/
      config.yaml      the resolved config of the run (defaults + file + flags)
      manifest.json    phases finished, each with a small summary, written atomically
      run.lock         held while a process works in the directory

A phase is marked done only after its outputs are complete, so a run killed at any moment
redoes at most the phase it was in; phases that append records (search, synthesis) resume
inside the phase by skipping the keys already written.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from leanstar.config import dump_yaml
from leanstar.jsonl import write_json_atomic, write_text_atomic


class RunDirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- lock ---------------------------------------------------------------
    def lock(self) -> RunDir:
        """Take the directory's lock, failing at once if another process holds it."""
        fd = os.open(self.path / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(
                f"{self.path}: another leanstar process is working in this run directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self.lock()

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    # -- config -------------------------------------------------------------
    def save_config(self, cfg: Any, name: str = "config.yaml") -> Path:
        path = self.path / name
        write_text_atomic(path, dump_yaml(cfg))
        return path

    def saved_and_current_config(
        self, cfg: Any, name: str = "config.yaml"
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The config saved here and `cfg`, each as {dotted key: value} in the saved file's
        types (`cfg` goes through the same YAML), for refusing to resume a run with other
        settings; None when no config is saved."""
        path = self.path / name
        if not path.exists():
            return None
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return _flatten(saved), _flatten(yaml.safe_load(dump_yaml(cfg)))

    # -- manifest -----------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"phases": {}}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def is_done(self, phase: str) -> bool:
        return phase in self.manifest()["phases"]

    def phase_info(self, phase: str) -> dict[str, Any] | None:
        return self.manifest()["phases"].get(phase)

    def mark_done(self, phase: str, **info: Any) -> None:
        manifest = self.manifest()
        manifest["phases"][phase] = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        write_json_atomic(self.manifest_path, manifest)


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
