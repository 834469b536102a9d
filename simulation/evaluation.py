"""Score every method on the virtual sites' test sets the same way: per-site and pooled AUC, ROC, from histograms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from torch import nn

from bcvlm_model import TASKS
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.metrics import (
    DEFAULT_BINS,
    ScoreHistogram,
    auc_from_histogram,
    roc_curve_from_histogram,
    score_histogram,
)
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.text.report_config import TextConfig
from bcvlm_model.training import evaluate
from bcvlm_model.training.loaders import build_loader


@dataclass
class SiteScores:
    """One method's test-set probabilities and labels at one site, per task (unlabelled entries removed)."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)


def score_model_on_sites(
    model: nn.Module,
    test_tables: Mapping[str, pd.DataFrame],
    preprocess: PreprocessConfig,
    text: TextConfig,
    model_cfg: ModelConfig,
    cache_dir: str | None,
    batch_size: int,
) -> dict[str, SiteScores]:
    """Evaluate one model on each site's test rows (deterministic: eval mode, canonical report text)."""
    results: dict[str, SiteScores] = {}
    for site, table in test_tables.items():
        loader = build_loader(
            table, preprocess, text, model_cfg, cache_dir=cache_dir, batch_size=batch_size, train=False, seed=0
        )
        outcome = evaluate(model, loader)
        results[site] = SiteScores(scores=dict(outcome.scores), labels=dict(outcome.labels))
    return results


def oracle_scores_on_sites(test_tables: Mapping[str, pd.DataFrame]) -> dict[str, SiteScores] | None:
    """The synthetic cohort's oracle probabilities (from the generative latent) on the same test rows, or None."""
    results: dict[str, SiteScores] = {}
    for site, table in test_tables.items():
        entry = SiteScores()
        for task in TASKS:
            column = f"oracle_{task}"
            if column not in table.columns:
                return None
            labels = table[task].to_numpy(dtype=float)
            scores = table[column].to_numpy(dtype=float)
            keep = ~np.isnan(labels)
            if np.isnan(scores[keep]).any():
                return None
            entry.scores[task], entry.labels[task] = scores[keep], labels[keep]
        results[site] = entry
    return results


def _auc_or_none(histogram: ScoreHistogram, min_cases: int) -> float | None:
    if min(histogram.n_positive, histogram.n_negative) < max(1, min_cases):
        return None
    value = auc_from_histogram(histogram)
    return None if math.isnan(value) else float(value)


def _roc_points(histogram: ScoreHistogram) -> dict[str, list[float]]:
    fpr, tpr, _ = roc_curve_from_histogram(histogram)
    keep = np.ones(len(fpr), dtype=bool)
    keep[1:-1] = (np.diff(fpr)[:-1] != 0) | (np.diff(tpr)[:-1] != 0)  # drop repeated points
    return {"fpr": [round(float(v), 6) for v in fpr[keep]], "tpr": [round(float(v), 6) for v in tpr[keep]]}


def summarise_method(
    per_site: Mapping[str, SiteScores], n_bins: int = DEFAULT_BINS, min_cases: int = 1
) -> dict[str, Any]:
    """`{"pooled_auc": {task}, "site_auc": {site: {task}}, "mean_site_auc": {task}, "roc": {task: {fpr, tpr}},
    "cases": {task: {pos, neg}}}`.

    Pooled = the sum of the sites' score histograms (the same binned AUC the federated server computes); it also
    rewards scores that sit on one scale across sites (a site's own model tracking its prevalence). The mean of the
    per-site AUCs (sites with both classes) measures ranking within each hospital only.
    """
    summary: dict[str, Any] = {"pooled_auc": {}, "site_auc": {}, "mean_site_auc": {}, "roc": {}, "cases": {}}
    for task in TASKS:
        pooled = ScoreHistogram.empty(n_bins)
        for site, entry in per_site.items():
            scores = entry.scores.get(task, np.zeros(0))
            labels = entry.labels.get(task, np.zeros(0))
            histogram = score_histogram(np.clip(scores, 0.0, 1.0), labels, n_bins)
            summary["site_auc"].setdefault(site, {})[task] = _auc_or_none(histogram, min_cases)
            pooled = pooled + histogram
        summary["pooled_auc"][task] = _auc_or_none(pooled, min_cases)
        site_aucs = [aucs[task] for aucs in summary["site_auc"].values() if aucs.get(task) is not None]
        summary["mean_site_auc"][task] = float(np.mean(site_aucs)) if site_aucs else None
        summary["cases"][task] = {"positive": pooled.n_positive, "negative": pooled.n_negative}
        if pooled.n_positive and pooled.n_negative:
            summary["roc"][task] = _roc_points(pooled)
    return summary
