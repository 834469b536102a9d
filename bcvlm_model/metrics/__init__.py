"""Metrics that can be computed from aggregates alone: score histograms, AUC, ROC, sensitivity at a specificity."""

from bcvlm_model.metrics.score_histograms import (
    DEFAULT_BINS,
    ScoreHistogram,
    auc_from_histogram,
    exact_auc,
    pooled_auc_from_histograms,
    roc_curve_from_histogram,
    score_histogram,
    sensitivity_at_specificity_from_histogram,
    task_metrics_from_histogram,
)

__all__ = [
    "DEFAULT_BINS",
    "ScoreHistogram",
    "auc_from_histogram",
    "exact_auc",
    "pooled_auc_from_histograms",
    "roc_curve_from_histogram",
    "score_histogram",
    "sensitivity_at_specificity_from_histogram",
    "task_metrics_from_histogram",
]
