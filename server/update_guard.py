"""Server-side rejection of site updates that are non-finite or larger than a norm bound (needs individual updates)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def update_norm(update: Sequence[np.ndarray]) -> float:
    """Global L2 norm over all arrays (inf/NaN propagate)."""
    total = 0.0
    for array in update:
        values = np.asarray(array, dtype=np.float64)
        total += float(np.sum(values * values))
    return math.sqrt(total) if math.isfinite(total) else total


def rejection_reason(update: Sequence[np.ndarray], reference: Sequence[np.ndarray], max_norm: float) -> str | None:
    """Why `update` must be rejected (shape mismatch, non-finite, norm above `max_norm`), or None to accept it."""
    if len(update) != len(reference):
        return f"{len(update)} arrays, expected {len(reference)}"
    for index, (array, expected) in enumerate(zip(update, reference)):
        if np.shape(array) != np.shape(expected):
            return f"array {index} has shape {np.shape(array)}, expected {np.shape(expected)}"
        if not np.isfinite(np.asarray(array)).all():
            return f"array {index} has non-finite values"
    norm = update_norm(update)
    if not norm <= max_norm:
        return f"update norm {norm:.4g} exceeds the bound {max_norm:.4g}"
    return None
