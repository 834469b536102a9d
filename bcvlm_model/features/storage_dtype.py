"""How the frozen-feature cache stores its tensors (no torch import, so site configs can check it cheaply)."""

from __future__ import annotations

from enum import StrEnum


class FeatureDtype(StrEnum):
    """Values of a site's `compute.frozen_feature_dtype` (features are computed in float32, cast when stored)."""

    float16 = "float16"
    """Half the disk."""
    float32 = "float32"
    """Bit-exact features."""
