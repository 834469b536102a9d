"""Per-round federated evaluation metrics: the pooled histogram's AUC, and what each site reported of itself.

The pooled histogram is the sum of the sites' released histograms: summed here from plain evaluate replies, or
summed under SecAgg+ (`secure_evaluation`) so that no single site's histogram reaches the server. Per-site AUCs are
computed at the sites and sent only above each site's own minimum number of cases.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from bcvlm_client.reply_schema import decode_histogram
from bcvlm_client.round_record import EvaluateStage, PooledTaskRecord, SiteTaskRecord
from bcvlm_model import TASKS
from bcvlm_model.metrics import ScoreHistogram, pool_histograms


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sum_site_histograms(
    site_metrics: Mapping[str, Mapping[str, Any]], n_bins: int, prefix: str = "hist_"
) -> dict[str, ScoreHistogram]:
    """Per task, the sum of the sites' plain evaluate-reply histograms (`prefix` "val_hist_": validation split)."""
    pooled = {task: ScoreHistogram.empty(n_bins) for task in TASKS}
    for metrics in site_metrics.values():
        for task in TASKS:
            if f"{prefix}{task}" in metrics:
                pooled[task] = pooled[task] + decode_histogram(metrics[f"{prefix}{task}"], n_bins)
    return pooled


def site_reported_metrics(site_metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, SiteTaskRecord]]:
    """Per site and task: the site's own AUC (None when the site withheld it) and its released case count."""
    return {
        site: {
            task: SiteTaskRecord(
                auc=_finite_or_none(float(metrics[f"auc_{task}"])) if f"auc_{task}" in metrics else None,
                cases=int(metrics.get(f"cases_{task}", 0)),
            )
            for task in TASKS
        }
        for site, metrics in site_metrics.items()
    }


def evaluation_stage(
    site_metrics: Mapping[str, Mapping[str, Any]],
    *,
    loss: float | None,
    failures: int,
    n_bins: int,
    min_cases: int,
    specificity: float,
    pooled_histograms: Mapping[str, ScoreHistogram] | None = None,
) -> EvaluateStage:
    """The round record's evaluation stage: pooled metrics per task (`pool_histograms`) from `pooled_histograms`
    (the secure sum) or else the sum of the sites' plain histograms; per site: what it reported."""
    pooled_counts = (
        dict(pooled_histograms) if pooled_histograms is not None else sum_site_histograms(site_metrics, n_bins)
    )
    pooled = {}
    for task in TASKS:
        histograms = [pooled_counts[task]] if task in pooled_counts else []
        metrics = pool_histograms(histograms, n_bins=n_bins, min_cases=min_cases, specificity=specificity)
        pooled[task] = PooledTaskRecord.from_pooled(
            metrics,
            n_sites=sum(1 for reply in site_metrics.values() if f"cases_{task}" in reply),
            secure_sum=pooled_histograms is not None,
        )
    return EvaluateStage(
        loss=_finite_or_none(loss),
        failures=int(failures),
        cases={
            site: {key: int(value) for key, value in reply.items() if key.startswith("cases_")}
            for site, reply in site_metrics.items()
        },
        pooled=pooled,
        sites=site_reported_metrics(site_metrics),
    )
