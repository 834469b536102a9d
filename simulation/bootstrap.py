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


def _patient_counts(index: CaseIndex, task: str, resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per site: how often each patient is drawn in each resample [resamples, patients] (patients with replacement,
    as many as the site has)."""
    counts = {
        site: np.zeros((resamples, len(per_task.get(task, []))))
        for site, per_task in index.images_of_patient.items()
        if per_task.get(task)
    }
    for row in range(resamples):
        for site, draws in counts.items():
            picks = rng.integers(0, draws.shape[1], size=draws.shape[1])
            draws[row] = np.bincount(picks, minlength=draws.shape[1])
    return counts


def _patient_of_case(groups: list[np.ndarray]) -> np.ndarray:
    patient = np.empty(sum(len(group) for group in groups), dtype=np.int64)
    for k, group in enumerate(groups):
        patient[group] = k
    return patient


def weighted_aucs(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) of each row of `weights` [resamples, cases]: case k counted weights[r, k]
    times, which is the AUC of the resample that holds those copies (NaN without both classes). One sort serves
    every resample, so a thousand resamples cost about one pass over the cases each."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(scores) == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # one group per tied score
    weight = weights[:, order]
    positive = np.add.reduceat(weight * (labels[order] == 1), starts, axis=1)
    negative = np.add.reduceat(weight * (labels[order] == 0), starts, axis=1)
    below = np.cumsum(negative, axis=1) - negative
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    wins = (positive * (below + 0.5 * negative)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _aucs(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, Mapping[str, np.ndarray]],
    task: str,
    weights: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(pooled AUC, mean per-site AUC) of every resample (NaN where undefined); `weights[site]` [resamples, cases]."""
    per_site = [weighted_aucs(scores[site][task], labels[site][task], weight) for site, weight in weights.items()]
    if not per_site:
        return np.full(0, np.nan), np.full(0, np.nan)
    pooled = weighted_aucs(
        np.concatenate([np.asarray(scores[site][task]) for site in weights]),
        np.concatenate([np.asarray(labels[site][task]) for site in weights]),
        np.concatenate(list(weights.values()), axis=1),
    )
    stacked = np.stack(per_site)
    defined = (~np.isnan(stacked)).sum(axis=0)
    mean_site = np.where(defined > 0, np.nansum(stacked, axis=0) / np.maximum(defined, 1), np.nan)
    return pooled, mean_site


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
    draws: dict[str, dict[str, list[tuple[float, float]]]] = {method: {} for method in scores}
    for task in TASKS:
        counts = _patient_counts(index, task, resamples, rng)
        # a case counts as often as its patient is drawn: the AUC of the resample that holds those copies
        weights = {
            site: draws[:, _patient_of_case(index.images_of_patient[site][task])] for site, draws in counts.items()
        }
        for method, per_site in scores.items():
            pooled, mean_site = _aucs(per_site, labels, task, weights)
            if not weights:
                pooled = mean_site = np.full(resamples, np.nan)
            draws[method][task] = list(zip(pooled.tolist(), mean_site.tolist()))
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
