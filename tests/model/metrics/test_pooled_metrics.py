"""Pooling site histograms into one task's metrics (bcvlm_model.metrics.pooled_metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bcvlm_model.metrics import pool_histograms, score_histogram, too_few_cases


def _histogram(scores: list[float], labels: list[float], n_bins: int = 10):
    return score_histogram(np.array(scores), np.array(labels), n_bins=n_bins)


def test_pooled_auc_is_the_auc_of_all_sites_cases_together() -> None:
    a = ([0.1, 0.9, 0.35], [0.0, 1.0, 1.0])
    b = ([0.55, 0.25, 0.75], [0.0, 0.0, 1.0])
    pooled = pool_histograms([_histogram(*a), _histogram(*b)], n_bins=10, min_cases=1, specificity=0.5)
    assert pooled.auc == pytest.approx(roc_auc_score(a[1] + b[1], a[0] + b[0]))
    assert (pooled.n_positive, pooled.n_negative) == (3, 3)


def test_a_class_below_min_cases_withholds_auc_sensitivity_and_roc() -> None:
    pooled = pool_histograms([_histogram([0.1, 0.9, 0.8], [0.0, 1.0, 1.0])], n_bins=10, min_cases=2, specificity=0.9)
    assert (pooled.auc, pooled.sensitivity_at_specificity, pooled.roc) == (None, None, None)
    assert pooled.withheld == "fewer than 2 cases in a class (positives=2, negatives=1)"


def test_enough_cases_give_auc_and_roc_without_a_reason() -> None:
    pooled = pool_histograms([_histogram([0.1, 0.9, 0.8], [0.0, 1.0, 1.0])], n_bins=10, min_cases=1, specificity=0.9)
    assert pooled.withheld is None and pooled.auc == 1.0
    assert pooled.roc is not None and pooled.roc.fpr[0] == 0.0 and pooled.roc.tpr[-1] == 1.0


def test_no_histograms_pool_to_an_empty_withheld_histogram() -> None:
    pooled = pool_histograms([], n_bins=10, min_cases=1, specificity=0.9)
    assert (pooled.n_positive, pooled.n_negative, pooled.histogram.n_bins, pooled.auc) == (0, 0, 10, None)


def test_min_cases_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="min_cases must be >= 1, got 0"):
        too_few_cases(5, 5, 0)
