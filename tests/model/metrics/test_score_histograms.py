"""Tests for histogram-based AUC, ROC and sensitivity (bcvlm_model.metrics.score_histograms)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bcvlm_model.metrics import (
    ScoreHistogram,
    auc_from_histogram,
    exact_auc,
    pooled_auc_from_histograms,
    roc_curve_from_histogram,
    score_histogram,
    sensitivity_at_specificity_from_histogram,
)


def _random_site(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random(n) < 0.3).astype(float)
    logits = rng.normal(size=n) + shift * labels
    return 1.0 / (1.0 + np.exp(-logits)), labels


def test_exact_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 2)  # many ties
    labels = (rng.random(300) < 0.4).astype(float)
    assert exact_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_pooled_histogram_auc_equals_auc_of_pooled_binned_scores() -> None:
    rng = np.random.default_rng(1)
    sites = [_random_site(rng, n, shift) for n, shift in [(120, 1.0), (80, 2.0), (200, 0.5)]]
    n_bins = 1000
    histograms = [score_histogram(s, y, n_bins) for s, y in sites]
    all_scores = np.concatenate([s for s, _ in sites])
    all_labels = np.concatenate([y for _, y in sites])
    binned = np.minimum((all_scores * n_bins).astype(int), n_bins - 1)
    assert pooled_auc_from_histograms(histograms) == pytest.approx(roc_auc_score(all_labels, binned), abs=1e-12)
    # fine bins: within binning error of the unbinned AUC
    assert pooled_auc_from_histograms(histograms) == pytest.approx(roc_auc_score(all_labels, all_scores), abs=2e-3)
    # pooling is not the mean of per-site AUCs in general
    per_site = [auc_from_histogram(h) for h in histograms]
    assert abs(np.mean(per_site) - pooled_auc_from_histograms(histograms)) > 1e-4


def test_nan_labels_are_ignored_and_bad_scores_rejected() -> None:
    h = score_histogram(np.array([0.1, 0.9, 0.5]), np.array([0.0, 1.0, np.nan]), n_bins=10)
    assert (h.n_positive, h.n_negative) == (1, 1)
    assert auc_from_histogram(h) == 1.0
    with pytest.raises(ValueError, match="probabilities"):
        score_histogram(np.array([1.5]), np.array([1.0]))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        score_histogram(np.array([0.5]), np.array([2.0]))


def test_single_class_gives_nan_and_flat_roundtrip() -> None:
    h = score_histogram(np.array([0.2, 0.3]), np.array([1.0, 1.0]), n_bins=8)
    assert np.isnan(auc_from_histogram(h))
    assert ScoreHistogram.from_flat_list(h.to_flat_list()) == h
    assert ScoreHistogram.from_flat_list(h.to_flat_list()) != ScoreHistogram.empty(8)
    with pytest.raises(ValueError):
        h + ScoreHistogram.empty(9)


def test_roc_and_sensitivity_at_specificity() -> None:
    rng = np.random.default_rng(2)
    scores, labels = _random_site(rng, 2000, 1.5)
    h = score_histogram(scores, labels, 1000)
    fpr, tpr, thr = roc_curve_from_histogram(h)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc_from_histogram(h), abs=1e-9)
    sens = sensitivity_at_specificity_from_histogram(h, 0.9)
    # brute force on the raw scores at the same bin-edge thresholds
    best = 0.0
    for t in np.arange(0, 1001) / 1000:
        called = scores >= t
        spec = (~called[labels == 0]).mean()
        if spec >= 0.9:
            best = max(best, called[labels == 1].mean())
    assert sens == pytest.approx(best, abs=1e-9)
