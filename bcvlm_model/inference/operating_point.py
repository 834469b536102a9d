"""Chooses the decision threshold that reaches a target specificity on validation scores and stores it in a checkpoint's `extra`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from bcvlm_model import TASKS
from bcvlm_model.metrics import ScoreHistogram

OPERATING_POINTS_KEY = "operating_points"
"""Key of `LoadedCheckpoint.extra` (and of the `extra` dict given to `save_checkpoint`) holding the thresholds."""

DEFAULT_TARGET_SPECIFICITY = 0.9


@dataclass(frozen=True)
class OperatingPoint:
    """A probability threshold (call positive when p >= threshold) and what it achieved on validation data."""

    threshold: float
    target_specificity: float
    validation_specificity: float
    validation_sensitivity: float | None
    n_negatives: int
    n_positives: int


def choose_threshold(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[float] | np.ndarray,
    target_specificity: float = DEFAULT_TARGET_SPECIFICITY,
) -> OperatingPoint:
    """Smallest threshold t with specificity(t) >= target, where a case is called positive when p >= t.

    `scores` are probabilities in [0, 1]; `labels` are 0/1 with NaN for unlabelled cases (ignored).
    Raises ValueError when shapes differ, scores leave [0, 1], the target is outside (0, 1] or no negative is labelled.
    """
    scores_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels_arr = np.asarray(labels, dtype=np.float64).reshape(-1)
    if scores_arr.shape != labels_arr.shape:
        raise ValueError(f"scores ({scores_arr.size}) and labels ({labels_arr.size}) differ in length")
    if not 0.0 < target_specificity <= 1.0:
        raise ValueError(f"target specificity must be in (0, 1], got {target_specificity}")
    labelled = ~np.isnan(labels_arr)
    scores_arr, labels_arr = scores_arr[labelled], labels_arr[labelled]
    if np.any(~np.isfinite(scores_arr)) or np.any((scores_arr < 0) | (scores_arr > 1)):
        raise ValueError("scores must be probabilities in [0, 1] (apply a sigmoid to logits first)")
    if not np.all(np.isin(labels_arr, (0.0, 1.0))):
        raise ValueError("labels must be 0, 1 or NaN")
    negatives = np.sort(scores_arr[labels_arr == 0])
    positives = scores_arr[labels_arr == 1]
    if negatives.size == 0:
        raise ValueError("no labelled negative case: specificity is undefined")
    needed = math.ceil(target_specificity * negatives.size - 1e-9)
    candidates = np.unique(scores_arr)
    below = np.searchsorted(negatives, candidates, side="left")
    reaching = candidates[below >= needed]
    threshold = float(reaching[0]) if reaching.size else float(np.nextafter(negatives[-1], np.inf))
    specificity = float(np.mean(negatives < threshold))
    sensitivity = float(np.mean(positives >= threshold)) if positives.size else None
    return OperatingPoint(
        threshold, float(target_specificity), specificity, sensitivity, int(negatives.size), int(positives.size)
    )


def threshold_from_histogram(
    histogram: ScoreHistogram, target_specificity: float = DEFAULT_TARGET_SPECIFICITY
) -> OperatingPoint:
    """Operating point from a (pooled, released) validation histogram: the fewest bins called positive whose
    specificity on the histogram reaches the target; a case is called positive when p >= threshold.

    Any threshold between the last bin called negative and the next non-empty bin scores the same on the histogram;
    the middle of that gap is taken, because a released cell holds cases from around its bin (sites place merged
    cells at their case-weighted mean bin). Raises ValueError without a negative case or with a target outside (0, 1].
    """
    if not 0.0 < target_specificity <= 1.0:
        raise ValueError(f"target specificity must be in (0, 1], got {target_specificity}")
    n_neg, n_pos = histogram.n_negative, histogram.n_positive
    if n_neg == 0:
        raise ValueError("no negative case in the validation histogram: specificity is undefined")
    n_bins = histogram.n_bins
    needed = math.ceil(target_specificity * n_neg - 1e-9)
    negatives_below = np.concatenate([[0], np.cumsum(histogram.negatives)])  # [k] = negatives in bins < k
    first = int(np.flatnonzero(negatives_below >= needed)[0])  # calling bins >= first positive reaches the target
    occupied = np.flatnonzero((histogram.positives + histogram.negatives)[first:])
    next_case = first + int(occupied[0]) if occupied.size else n_bins
    threshold = (first + next_case) / (2.0 * n_bins)
    specificity = float(negatives_below[first] / n_neg)
    sensitivity = float(histogram.positives[first:].sum() / n_pos) if n_pos else None
    return OperatingPoint(threshold, float(target_specificity), specificity, sensitivity, int(n_neg), int(n_pos))


def operating_points_from_validation(
    scores: np.ndarray,
    labels: np.ndarray,
    target_specificity: float = DEFAULT_TARGET_SPECIFICITY,
    tasks: Sequence[str] = TASKS,
) -> dict[str, dict[str, Any]]:
    """Operating point per task from validation probabilities [N, len(tasks)] and labels (NaN = missing).

    A task without any labelled negative gets no entry (its predictions then carry no binary call).
    """
    scores_arr = np.asarray(scores, dtype=np.float64)
    labels_arr = np.asarray(labels, dtype=np.float64)
    expected = (scores_arr.shape[0], len(tasks)) if scores_arr.ndim == 2 else None
    if expected is None or scores_arr.shape != expected or labels_arr.shape != expected:
        raise ValueError(f"scores {scores_arr.shape} and labels {labels_arr.shape} must both be [N, {len(tasks)}]")
    points: dict[str, dict[str, Any]] = {}
    for column, task in enumerate(tasks):
        if not np.any(labels_arr[:, column] == 0):
            continue
        points[task] = asdict(choose_threshold(scores_arr[:, column], labels_arr[:, column], target_specificity))
    return points


def store_operating_points(
    extra: Mapping[str, Any] | None,
    scores: np.ndarray,
    labels: np.ndarray,
    target_specificity: float = DEFAULT_TARGET_SPECIFICITY,
    tasks: Sequence[str] = TASKS,
) -> dict[str, Any]:
    """Copy of a checkpoint `extra` dict with `extra["operating_points"]` set from validation data (pass to save_checkpoint)."""
    updated = dict(extra or {})
    updated[OPERATING_POINTS_KEY] = operating_points_from_validation(scores, labels, target_specificity, tasks)
    return updated


def read_thresholds(extra: Mapping[str, Any] | None, tasks: Sequence[str] = TASKS) -> dict[str, float | None]:
    """Threshold per task stored in a checkpoint's `extra` (None for tasks without an operating point)."""
    stored = (extra or {}).get(OPERATING_POINTS_KEY) or {}
    thresholds: dict[str, float | None] = {}
    for task in tasks:
        entry = stored.get(task)
        thresholds[task] = None if entry is None else float(entry["threshold"])
    return thresholds
