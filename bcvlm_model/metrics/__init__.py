"""Metrics that can be computed from aggregates alone: score histograms, AUC, ROC, sensitivity at a specificity."""

from bcvlm_model.metrics.pooled_metrics import PooledMetrics, RocPoints, pool_histograms, too_few_cases
from bcvlm_model.metrics.score_histograms import (
    DEFAULT_BINS,
    ScoreHistogram,
    auc_from_histogram,
    exact_auc,
    pooled_auc_from_histograms,
    roc_curve_from_histogram,
    score_histogram,
    sensitivity_at_specificity_from_histogram,
)

__all__ = [
    "DEFAULT_BINS",
    "PooledMetrics",
    "RocPoints",
    "ScoreHistogram",
    "auc_from_histogram",
    "exact_auc",
    "pool_histograms",
    "pooled_auc_from_histograms",
    "roc_curve_from_histogram",
    "score_histogram",
    "sensitivity_at_specificity_from_histogram",
    "too_few_cases",
]
