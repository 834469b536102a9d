"""What a site may send back: reply metric names and types, and the byte encoding of score histograms."""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from bcvlm_model import TASKS
from bcvlm_model.metrics import ScoreHistogram


class DeclineReason(IntEnum):
    """Why a site did not train in a round; sent as the fit metric `declined` (0 = it trained)."""

    TRAINED = 0
    BUDGET_EXHAUSTED = 1
    """The round would take the site's epsilon past its budget."""
    NO_TRAINING_DATA = 2
    DP_REQUIRED = 3
    """The server asked for training without DP; this site requires DP."""
    DP_UNSAFE_MODEL = 4
    """The model the server described has no DP-ready trainable set, or fails the DP-safety checks."""
    LOCAL_STEPS_OVER_LIMIT = 5
    ROUNDS_OVER_LIMIT = 6
    MODEL_KIND_NOT_ALLOWED = 7
    ROUND_REPLAYED = 8
    """The server sent a round this site already trained in the same run."""
    DP_UNAVAILABLE = 9
    """The server asked for DP; this site has DP turned off."""
    PREPROCESS_MISMATCH = 10
    """This site's cache was not prepared with the server's `preprocess` (and decoding on the fly is not allowed)."""


FIT_METRICS: dict[str, type] = {
    "loss": float,
    "epsilon": float,
    "declined": int,  # a DeclineReason code, 0 = trained
    "steps": int,
    "train_seconds": float,
}
"""Fit-reply metrics (aggregates of the local round); nothing else is allowed."""

EVALUATE_METRICS: dict[str, type] = {
    **{f"cases_{task}": int for task in TASKS},
    **{f"hist_{task}": bytes for task in TASKS},
}
"""Evaluate-reply metrics: labelled-case counts and score histograms (int64 LE, positives then negatives)."""

HISTOGRAM_DTYPE = np.dtype("<i8")


def encode_histogram(histogram: ScoreHistogram) -> bytes:
    """Positives then negatives as little-endian int64 bytes."""
    flat = np.concatenate([histogram.positives, histogram.negatives]).astype(HISTOGRAM_DTYPE)
    return flat.tobytes()


def decode_histogram(payload: bytes, n_bins: int) -> ScoreHistogram:
    """Inverse of `encode_histogram`; the byte length must match `n_bins` exactly and counts be non-negative."""
    if not isinstance(payload, (bytes, bytearray)):
        raise TypeError(f"a histogram is bytes, got {type(payload).__name__}")
    expected = 2 * n_bins * HISTOGRAM_DTYPE.itemsize
    if len(payload) != expected:
        raise ValueError(f"a histogram of {n_bins} bins has {expected} bytes, got {len(payload)}")
    flat = np.frombuffer(bytes(payload), dtype=HISTOGRAM_DTYPE).astype(np.int64)
    if (flat < 0).any():
        raise ValueError("histogram counts must be non-negative")
    return ScoreHistogram(flat[:n_bins].copy(), flat[n_bins:].copy())
