"""What a site may send back: reply metric names and types, and the byte encoding of score histograms."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Mapping

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
    "epsilon": float,
    "declined": int,  # a DeclineReason code, 0 = trained
    "steps": int,
}
"""Fit-reply metrics; nothing else is allowed. The training loss and time stay in the site log: they are
statistics of the site's patients that SecAgg+ would not hide (it masks only the arrays)."""

EVALUATE_METRICS: dict[str, type] = {
    **{f"cases_{task}": int for task in TASKS},
    **{f"hist_{task}": bytes for task in TASKS},
    **{f"auc_{task}": float for task in TASKS},
    **{f"val_hist_{task}": bytes for task in TASKS},
}
"""Evaluate-reply metrics: labelled cases and score histograms (int64 LE, positives then negatives) within the site's
release bounds (`bcvlm_client.evaluation_release`), and the site's own AUC where it has enough cases. `val_hist_*`:
the same release of the site's validation split, from which the server chooses operating points."""

SECURE_EVALUATION_KEY = "secure-evaluation"
"""Fit-instruction config flag: this SecAgg+ "training" message asks for the site's evaluation histograms as arrays,
so that they are summed under secure aggregation (the server sees only the pooled histogram)."""


def asks_secure_evaluation(config_records: Mapping[str, Any]) -> bool:
    """Whether an instruction's config records (`fitins.config`) flag a secure-evaluation SecAgg+ pass."""
    fit_config = config_records.get("fitins.config")
    return bool(fit_config is not None and fit_config.get(SECURE_EVALUATION_KEY))


COUNT_SCALE_KEY = "count-scale"
"""Histogram counts are sent divided by this (SecAgg+ quantises values within its clipping range)."""
EVALUATION_WEIGHT_KEY = "evaluation-weight"
"""The weight every site gives its histogram vector (the SecAgg+ `max_weight`: all sites weigh the same)."""

SECURE_EVALUATION_METRICS: dict[str, type] = {
    **{f"cases_{task}": int for task in TASKS},
    **{f"auc_{task}": float for task in TASKS},
}
"""Plain metrics beside the masked histogram vector: labelled cases and the site's own AUC (above its minimum)."""

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


SECURE_EVALUATION_ARRAYS = 4 * len(TASKS)
"""Arrays of a secure-evaluation reply: per task positives and negatives of the evaluation split, then the same for
the validation split."""


def histograms_to_arrays(
    histograms: dict[str, ScoreHistogram], validation: dict[str, ScoreHistogram], count_scale: float
) -> list[np.ndarray]:
    """Per task in TASKS order: positives then negatives, as float64 counts / `count_scale`, first of the evaluation
    split, then of the validation split (one secure-sum vector, so both are pooled in the same pass)."""
    arrays = []
    for released in (histograms, validation):
        for task in TASKS:
            arrays.append(released[task].positives.astype(np.float64) / count_scale)
            arrays.append(released[task].negatives.astype(np.float64) / count_scale)
    return arrays


def arrays_to_histograms(
    arrays: list[np.ndarray], count_scale: float
) -> tuple[dict[str, ScoreHistogram], dict[str, ScoreHistogram]]:
    """Inverse of `histograms_to_arrays` for a (summed) vector: (evaluation, validation) histograms, counts rounded to
    the nearest integer."""
    if len(arrays) != SECURE_EVALUATION_ARRAYS:
        raise ValueError(f"expected {SECURE_EVALUATION_ARRAYS} histogram arrays, got {len(arrays)}")
    counts = [
        np.clip(np.rint(np.asarray(array, dtype=np.float64) * count_scale), 0, None).astype(np.int64)
        for array in arrays
    ]
    n = len(TASKS)
    evaluation = {task: ScoreHistogram(counts[2 * index], counts[2 * index + 1]) for index, task in enumerate(TASKS)}
    validation = {
        task: ScoreHistogram(counts[2 * (n + index)], counts[2 * (n + index) + 1]) for index, task in enumerate(TASKS)
    }
    return evaluation, validation
