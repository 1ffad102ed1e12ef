"""Loading a causal LM checkpoint for sampling, with the dtype the config asks for."""

from __future__ import annotations


def load_causal_lm(path: str, dtype: str = "auto"):
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
