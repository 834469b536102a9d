"""Per-round federated evaluation metrics from the sites' score histograms (pooled exactly by summing)."""
from __future__ import annotations

import math
from typing import Any, Mapping

from bcvlm_model import TASKS
from bcvlm_model.metrics import ScoreHistogram, task_metrics_from_histogram
from bcvlm_client.reply_schema import decode_histogram


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def site_histograms(metrics: Mapping[str, Any], n_bins: int) -> dict[str, ScoreHistogram]:
    """Decode one site's evaluate-reply histograms, per task."""
    return {task: decode_histogram(metrics[f"hist_{task}"], n_bins) for task in TASKS if f"hist_{task}" in metrics}


def evaluation_metrics(
    site_metrics: Mapping[str, Mapping[str, Any]], *, n_bins: int, min_cases: int, specificity: float
) -> dict[str, Any]:
    """Pooled and per-site AUC / sensitivity per task; a metric on fewer than `min_cases` per class is withheld."""
    pooled: dict[str, Any] = {}
    per_site: dict[str, dict[str, Any]] = {site: {} for site in site_metrics}
    for task in TASKS:
        total = ScoreHistogram.empty(n_bins)
        for site, metrics in site_metrics.items():
            histograms = site_histograms(metrics, n_bins)
            if task not in histograms:
                continue
            total = total + histograms[task]
            per_site[site][task] = {
                key: _finite_or_none(value)
                for key, value in task_metrics_from_histogram(
                    histograms[task], min_cases=min_cases, specificity=specificity
                ).items()
            }
        summary = {
            key: _finite_or_none(value)
            for key, value in task_metrics_from_histogram(total, min_cases=min_cases, specificity=specificity).items()
        }
        summary["n_sites"] = sum(1 for site in per_site if task in per_site[site])
        summary["histogram"] = {"positives": total.positives.tolist(), "negatives": total.negatives.tolist()}
        pooled[task] = summary
    return {"pooled": pooled, "sites": per_site}
