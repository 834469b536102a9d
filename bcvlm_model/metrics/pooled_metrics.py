"""Pool sites' score histograms into one task's metrics (AUC, cases, ROC summary) with one rule for too few cases.

The federated server (its round record) and the simulation (its method summaries) both call `pool_histograms`,
so the same histograms give the same numbers, and a metric is withheld on the same condition in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from bcvlm_model.metrics.score_histograms import (
    ScoreHistogram,
    auc_from_histogram,
    roc_curve_from_histogram,
    sensitivity_at_specificity_from_histogram,
)


@dataclass(frozen=True)
class RocPoints:
    """The ROC curve of a pooled histogram, repeated points dropped, rounded to 6 decimals (for reports)."""

    fpr: list[float]
    tpr: list[float]


@dataclass(frozen=True)
class PooledMetrics:
    """One task's metrics on the sum of the sites' histograms; AUC, sensitivity and ROC are None when withheld."""

    histogram: ScoreHistogram
    n_positive: int
    n_negative: int
    specificity_target: float | None
    auc: float | None
    sensitivity_at_specificity: float | None
    roc: RocPoints | None
    withheld: str | None


def too_few_cases(n_positive: int, n_negative: int, min_cases: int) -> str | None:
    """Why a metric on these cases is withheld (a class has fewer than `min_cases` cases), or None when it is not."""
    if min_cases < 1:
        # Without both classes an AUC is undefined, so no threshold below 1 is meaningful.
        raise ValueError(f"min_cases must be >= 1, got {min_cases}")
    if min(n_positive, n_negative) < min_cases:
        return f"fewer than {min_cases} cases in a class (positives={n_positive}, negatives={n_negative})"
    return None


def roc_points(histogram: ScoreHistogram) -> RocPoints:
    """The ROC curve at the histogram's bin edges without repeated points."""
    fpr, tpr, _ = roc_curve_from_histogram(histogram)
    keep = np.ones(len(fpr), dtype=bool)
    keep[1:-1] = (np.diff(fpr)[:-1] != 0) | (np.diff(tpr)[:-1] != 0)
    return RocPoints(fpr=[round(float(v), 6) for v in fpr[keep]], tpr=[round(float(v), 6) for v in tpr[keep]])


def pool_histograms(
    histograms: Iterable[ScoreHistogram], *, n_bins: int, min_cases: int, specificity: float | None = None
) -> PooledMetrics:
    """Sum `histograms` (of `n_bins` bins; none = an empty histogram) and compute the task's metrics on the sum.

    AUC, sensitivity at `specificity` (a ROC summary: the threshold is chosen on the same cases; None when no
    `specificity` is asked for) and the ROC curve are given only when each class holds at least `min_cases` cases (`too_few_cases`); otherwise `withheld` says why.
    """
    if specificity is not None and not 0.0 < specificity <= 1.0:
        raise ValueError(f"specificity must be in (0, 1], got {specificity}")
    target = None if specificity is None else float(specificity)
    total = ScoreHistogram.empty(n_bins)
    for histogram in histograms:
        total = total + histogram
    n_pos, n_neg = total.n_positive, total.n_negative
    withheld = too_few_cases(n_pos, n_neg, min_cases)
    if withheld is not None:
        return PooledMetrics(total, n_pos, n_neg, target, None, None, None, withheld)
    return PooledMetrics(
        histogram=total,
        n_positive=n_pos,
        n_negative=n_neg,
        specificity_target=target,
        auc=auc_from_histogram(total),
        sensitivity_at_specificity=(
            None if specificity is None else sensitivity_at_specificity_from_histogram(total, specificity)
        ),
        roc=roc_points(total),
        withheld=None,
    )
