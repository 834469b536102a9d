"""Per-class score histograms on [0, 1] and the AUC / ROC / sensitivity computed exactly from their sums.

Sites send histograms (counts of positive and negative cases per score bin), never per-image scores. Summing the
histograms of all sites and computing the AUC from the sum gives exactly the AUC of the pooled, binned scores:
scores in the same bin count as ties (half a concordant pair), as in the Mann-Whitney statistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DEFAULT_BINS = 1000
"""Fine bins: with 1000 bins a score is resolved to 0.001."""


@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """Counts of positive and negative cases per equal-width score bin on [0, 1]."""

    positives: np.ndarray
    negatives: np.ndarray

    def __post_init__(self) -> None:
        if self.positives.shape != self.negatives.shape or self.positives.ndim != 1:
            raise ValueError("positives and negatives must be 1-D arrays of the same length")
        if (self.positives < 0).any() or (self.negatives < 0).any():
            raise ValueError("histogram counts must be non-negative")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        return bool(np.array_equal(self.positives, other.positives) and np.array_equal(self.negatives, other.negatives))

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_bins(self) -> int:
        return int(self.positives.shape[0])

    @property
    def n_positive(self) -> int:
        return int(self.positives.sum())

    @property
    def n_negative(self) -> int:
        return int(self.negatives.sum())

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        if self.n_bins != other.n_bins:
            raise ValueError(f"cannot add histograms with {self.n_bins} and {other.n_bins} bins")
        return ScoreHistogram(self.positives + other.positives, self.negatives + other.negatives)

    def to_flat_list(self) -> list[int]:
        """Positives then negatives, as plain ints (for metric records)."""
        return [int(v) for v in np.concatenate([self.positives, self.negatives])]

    @classmethod
    def from_flat_list(cls, values: Sequence[int | float]) -> "ScoreHistogram":
        flat = np.asarray(values, dtype=np.int64)
        if flat.ndim != 1 or flat.shape[0] % 2:
            raise ValueError("a flat histogram has an even number of counts")
        half = flat.shape[0] // 2
        return cls(flat[:half].copy(), flat[half:].copy())

    @classmethod
    def empty(cls, n_bins: int = DEFAULT_BINS) -> "ScoreHistogram":
        return cls(np.zeros(n_bins, dtype=np.int64), np.zeros(n_bins, dtype=np.int64))


def score_histogram(scores: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> ScoreHistogram:
    """Histogram probabilities `scores` in [0, 1] by binary `labels`; entries whose label is NaN are ignored."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.shape}) and labels ({labels.shape}) differ in length")
    keep = ~np.isnan(labels)
    scores, labels = scores[keep], labels[keep]
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if ((scores < 0) | (scores > 1)).any():
        raise ValueError("scores must be probabilities in [0, 1]")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0, 1 or NaN")
    bins = np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)
    positives = np.bincount(bins[labels == 1], minlength=n_bins).astype(np.int64)
    negatives = np.bincount(bins[labels == 0], minlength=n_bins).astype(np.int64)
    return ScoreHistogram(positives, negatives)


def auc_from_histogram(histogram: ScoreHistogram) -> float:
    """Mann-Whitney AUC of binned scores (ties within a bin count 1/2); NaN without both classes."""
    n_pos, n_neg = histogram.n_positive, histogram.n_negative
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives_below = np.concatenate([[0], np.cumsum(histogram.negatives)[:-1]])
    concordant = (histogram.positives * (negatives_below + 0.5 * histogram.negatives)).sum()
    return float(concordant / (n_pos * n_neg))


def pooled_auc_from_histograms(histograms: Iterable[ScoreHistogram]) -> float:
    """AUC of all sites' cases together, from the sum of their histograms."""
    histograms = list(histograms)
    if not histograms:
        return float("nan")
    total = histograms[0]
    for histogram in histograms[1:]:
        total = total + histogram
    return auc_from_histogram(total)


def roc_curve_from_histogram(histogram: ScoreHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, threshold) for thresholds at the bin edges, from 'all negative' to 'all positive'."""
    n_pos, n_neg = max(histogram.n_positive, 1), max(histogram.n_negative, 1)
    # Calling positive every score >= edge k/n_bins, for k = n_bins .. 0.
    pos_at_or_above = np.concatenate([[0], np.cumsum(histogram.positives[::-1])])
    neg_at_or_above = np.concatenate([[0], np.cumsum(histogram.negatives[::-1])])
    thresholds = np.arange(histogram.n_bins, -1, -1) / histogram.n_bins
    return neg_at_or_above / n_neg, pos_at_or_above / n_pos, thresholds


def sensitivity_at_specificity_from_histogram(histogram: ScoreHistogram, specificity: float) -> float:
    """Highest sensitivity among bin-edge thresholds whose specificity is at least `specificity`."""
    if not 0.0 < specificity <= 1.0:
        raise ValueError("specificity must be in (0, 1]")
    if histogram.n_positive == 0 or histogram.n_negative == 0:
        return float("nan")
    fpr, tpr, _ = roc_curve_from_histogram(histogram)
    allowed = (1.0 - fpr) >= specificity - 1e-12
    return float(tpr[allowed].max())


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC of unbinned scores (ties count 1/2); NaN labels ignored; NaN without both classes."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    keep = ~np.isnan(labels)
    scores, labels = scores[keep], labels[keep]
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty_like(order, dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks for ties
    unique, first_index, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = first_index + (counts + 1) / 2.0
    ranks[order] = np.repeat(average_rank, counts)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))
