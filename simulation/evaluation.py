"""Score every method on the virtual sites' test sets the same way: per-site and pooled AUC, ROC, from histograms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from torch import nn

from bcvlm_model import TASKS
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.metrics import DEFAULT_BINS, ScoreHistogram, pool_histograms, score_histogram
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.text.report_config import TextConfig
from bcvlm_model.training.loaders import build_loader
from bcvlm_model.training.loops import evaluate


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


def summarise_histograms(
    per_site: Mapping[str, Mapping[str, ScoreHistogram]], n_bins: int = DEFAULT_BINS, min_cases: int = 1
) -> dict[str, Any]:
    """`summarise_method` of the sites' score histograms per task (`{site: {task: histogram}}`).

    Every AUC, pooled or per site, comes from `pool_histograms`: the rule for too few cases is the federated
    server's (None when a class has fewer than `min_cases` cases).
    """
    summary: dict[str, Any] = {"pooled_auc": {}, "site_auc": {}, "mean_site_auc": {}, "roc": {}, "cases": {}}
    for task in TASKS:
        site_histograms = [entry[task] for entry in per_site.values() if task in entry]
        for site, entry in per_site.items():
            own = pool_histograms([entry[task]] if task in entry else [], n_bins=n_bins, min_cases=min_cases)
            summary["site_auc"].setdefault(site, {})[task] = own.auc
        pooled = pool_histograms(site_histograms, n_bins=n_bins, min_cases=min_cases)
        summary["pooled_auc"][task] = pooled.auc
        site_aucs = [aucs[task] for aucs in summary["site_auc"].values() if aucs.get(task) is not None]
        summary["mean_site_auc"][task] = float(np.mean(site_aucs)) if site_aucs else None
        summary["cases"][task] = {"positive": pooled.n_positive, "negative": pooled.n_negative}
        if pooled.roc is not None:
            summary["roc"][task] = {"fpr": pooled.roc.fpr, "tpr": pooled.roc.tpr}
    return summary


def summarise_method(
    per_site: Mapping[str, SiteScores], n_bins: int = DEFAULT_BINS, min_cases: int = 1
) -> dict[str, Any]:
    """`{"pooled_auc": {task}, "site_auc": {site: {task}}, "mean_site_auc": {task}, "roc": {task: {fpr, tpr}},
    "cases": {task: {pos, neg}}}`.

    Pooled = the sum of the sites' score histograms (the same binned AUC the federated server computes); it also
    rewards scores that sit on one scale across sites (a site's own model tracking its prevalence). The mean of the
    per-site AUCs (sites with both classes) measures ranking within each hospital only.
    """
    histograms = {
        site: {
            task: score_histogram(
                np.clip(entry.scores.get(task, np.zeros(0)), 0.0, 1.0), entry.labels.get(task, np.zeros(0)), n_bins
            )
            for task in TASKS
        }
        for site, entry in per_site.items()
    }
    return summarise_histograms(histograms, n_bins, min_cases)
