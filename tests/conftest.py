"""Shared fixtures: the tiny random Qwen2 (built once per session) and bundled data paths."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2 checkpoint with a locally trained tokenizer (built, never downloaded)."""
    from leanstar.models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-model") / "model")
