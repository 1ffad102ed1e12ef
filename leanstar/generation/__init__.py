"""Samplers: prompts in, n samples each out, behind one `Generator` interface."""

from leanstar.generation.base import Generator, Sample, SamplingParams, make_generator

__all__ = ["Generator", "Sample", "SamplingParams", "make_generator"]
