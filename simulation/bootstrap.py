"""Patient-clustered bootstrap: 95% CIs of every method's AUCs, and of each method's paired difference to a reference.

A test image is not an independent case: a patient has several, and they share the label. So each resample draws
patients with replacement within each site (all of a drawn patient's images come with them), and every method is
scored on the same resamples, which makes the paired difference's CI account for the methods' correlation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from bcvlm_model import TASKS
from bcvlm_model.metrics import exact_auc


@dataclass(frozen=True)
class CaseIndex:
    """Per site and task: for each test patient, the positions of their labelled images in the site's score array."""

    images_of_patient: dict[str, dict[str, list[np.ndarray]]]

    @classmethod
    def from_patients(cls, patients: Mapping[str, Mapping[str, np.ndarray]]) -> "CaseIndex":
        """`patients[site][task]` = the patient id of each scored image (same order as the scores)."""
        index: dict[str, dict[str, list[np.ndarray]]] = {}
        for site, per_task in patients.items():
            for task, ids in per_task.items():
                ids = np.asarray(ids).astype(str)
                _, inverse = np.unique(ids, return_inverse=True)
                index.setdefault(site, {})[task] = (
                    [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)] if len(ids) else []
                )
        return cls(index)


def _resample(index: CaseIndex, task: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    drawn = {}
    for site, per_task in index.images_of_patient.items():
        groups = per_task.get(task, [])
        if not groups:
            drawn[site] = np.zeros(0, dtype=np.int64)
            continue
        picks = rng.integers(0, len(groups), size=len(groups))
        drawn[site] = np.concatenate([groups[k] for k in picks])
    return drawn


def _aucs(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    task: str,
    rows: Mapping[str, np.ndarray],
) -> tuple[float, float]:
    """(pooled AUC, mean per-site AUC) on the selected rows (NaN where undefined)."""
    pooled_scores, pooled_labels, site_aucs = [], [], []
    for site, selected in rows.items():
        site_scores = np.asarray(scores[site][task])[selected]
        site_labels = np.asarray(labels[site][task])[selected]
        pooled_scores.append(site_scores)
        pooled_labels.append(site_labels)
        value = exact_auc(site_scores, site_labels)
        if not math.isnan(value):
            site_aucs.append(value)
    pooled = exact_auc(np.concatenate(pooled_scores), np.concatenate(pooled_labels)) if pooled_scores else math.nan
    return pooled, (float(np.mean(site_aucs)) if site_aucs else math.nan)


def _interval(values: list[float]) -> list[float] | None:
    finite = np.asarray([v for v in values if not math.isnan(v)])
    if len(finite) < max(10, len(values) // 2):
        return None
    low, high = np.percentile(finite, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def bootstrap_intervals(
    scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    index: CaseIndex,
    *,
    resamples: int,
    seed: int,
    reference: str | None = None,
) -> dict[str, dict[str, Any]]:
    """95% percentile CIs per method and task of the pooled and mean per-site AUC, and with `reference` the paired
    difference (method - reference) on the same resamples. `scores[method][site][task]`, `labels[site][task]`."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[tuple[float, float]]]] = {method: {task: [] for task in TASKS} for method in scores}
    for task in TASKS:
        for _ in range(resamples):
            rows = _resample(index, task, rng)
            for method, per_site in scores.items():
                draws[method][task].append(_aucs(per_site, labels, task, rows))
    out: dict[str, dict[str, Any]] = {}
    for method in scores:
        entry: dict[str, Any] = {"pooled_auc_ci": {}, "mean_site_auc_ci": {}}
        if reference is not None and method != reference and reference in scores:
            entry[f"pooled_auc_minus_{reference}_ci"] = {}
            entry[f"mean_site_auc_minus_{reference}_ci"] = {}
        for task in TASKS:
            pooled = [p for p, _ in draws[method][task]]
            per_site = [m for _, m in draws[method][task]]
            entry["pooled_auc_ci"][task] = _interval(pooled)
            entry["mean_site_auc_ci"][task] = _interval(per_site)
            if f"pooled_auc_minus_{reference}_ci" in entry:
                ref = draws[reference][task]
                entry[f"pooled_auc_minus_{reference}_ci"][task] = _interval([a - b for a, (b, _) in zip(pooled, ref)])
                entry[f"mean_site_auc_minus_{reference}_ci"][task] = _interval(
                    [a - b for a, (_, b) in zip(per_site, ref)]
                )
        out[method] = entry
    return out


def method_intervals(
    scores_of: Mapping[str, Mapping[str, Any]],
    test_tables: Mapping[str, pd.DataFrame],
    resamples: int,
    seed: int,
    reference: str = "federated",
) -> dict[str, dict[str, Any]]:
    """CIs for every scored method (`scores_of[method][site]` has `.scores`/`.labels` per task, in test-table
    order with unlabelled rows dropped), clustered on the test tables' `patient_id`."""
    if not scores_of:
        return {}
    first = next(iter(scores_of.values()))
    patients = {
        site: {task: table.loc[table[task].notna(), "patient_id"].to_numpy() for task in TASKS}
        for site, table in test_tables.items()
        if site in first
    }
    return patient_intervals(scores_of, patients, resamples=resamples, seed=seed, reference=reference)


def patient_intervals(
    scores_of: Mapping[str, Mapping[str, Any]],
    patients: Mapping[str, Mapping[str, np.ndarray]],
    *,
    resamples: int,
    seed: int,
    reference: str = "federated",
) -> dict[str, dict[str, Any]]:
    """CIs for every method's cases (`scores_of[method][site]` has `.scores`/`.labels` per task) clustered on
    `patients[site][task]`, the patient of each case. Cases may be images or breasts: with the same seed and the
    same patients, every call draws the same patients in every resample."""
    if not scores_of:
        return {}
    first = next(iter(scores_of.values()))
    labels = {site: {task: np.asarray(first[site].labels[task]) for task in TASKS} for site in first}
    index = CaseIndex.from_patients({site: patients[site] for site in first})
    scores = {method: {site: per_site[site].scores for site in first} for method, per_site in scores_of.items()}
    return bootstrap_intervals(
        scores, labels, index, resamples=resamples, seed=seed, reference=reference if reference in scores_of else None
    )
