"""Configs of `leanstar lean setup` and `leanstar lean doctor`."""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.config import LeanConfig, nested, option


@dataclass
class LeanSetupConfig:
    lean: LeanConfig = nested(LeanConfig, "where the Lake project lives")
    skip_cache: bool = option(False, "do not fetch the Mathlib build cache (builds Mathlib: hours)")


@dataclass
class LeanDoctorConfig:
    lean: LeanConfig = nested(LeanConfig, "where the Lake project lives")
