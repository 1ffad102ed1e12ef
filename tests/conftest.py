"""Shared fixtures: the tiny random Qwen2 (built once per session) and bundled data paths."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU, Triton kernels run under Triton's interpreter. The switch must be on before
# triton is first imported: its standard library (tl.sum, tl.max, ...) is decorated then.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2 checkpoint with a locally trained tokenizer (built, never downloaded)."""
    from leanstar.models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-model") / "model")
