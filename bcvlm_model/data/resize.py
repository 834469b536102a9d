"""Aspect-preserving resize into the configured size, padded on the right (away from the chest wall) and centred vertically."""

from __future__ import annotations

import numpy as np
from PIL import Image


def fitted_size(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """Largest (h, w) with the source aspect ratio that fits in the target."""
    scale = min(target_height / height, target_width / width)
    return max(1, min(target_height, round(height * scale))), max(1, min(target_width, round(width * scale)))


def resize_and_pad(
    unit: np.ndarray, target_height: int, target_width: int, pad_value: float = 0.0, antialias: bool = True
) -> np.ndarray:
    """Resize keeping the aspect ratio (float32, no 8-bit step), then pad to exactly target_height x target_width.

    The image is placed against the LEFT edge (chest wall side) and centred vertically.
    """
    new_h, new_w = fitted_size(unit.shape[0], unit.shape[1], target_height, target_width)
    source = Image.fromarray(np.ascontiguousarray(unit, dtype=np.float32), mode="F")
    resample = Image.Resampling.BILINEAR if antialias else Image.Resampling.NEAREST
    resized = np.asarray(source.resize((new_w, new_h), resample=resample), dtype=np.float32)
    out = np.full((target_height, target_width), pad_value, dtype=np.float32)
    top = (target_height - new_h) // 2
    out[top : top + new_h, :new_w] = resized
    return np.clip(out, 0.0, 1.0)
