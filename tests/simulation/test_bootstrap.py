"""Patient-clustered bootstrap: the CI covers the AUC, shrinks with more patients, and pairs methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bcvlm_model import TASKS
from bcvlm_model.metrics import exact_auc
from bcvlm_simulation.bootstrap import CaseIndex, bootstrap_intervals, weighted_aucs

VIEWS = 4


def _site(patients: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Scores of two correlated methods, labels and patient ids: each patient has VIEWS images with one label."""
    rng = np.random.default_rng(seed)
    patient_label = (rng.uniform(size=patients) < 0.4).astype(float)
    label = np.repeat(patient_label, VIEWS)
    patient = np.repeat([f"P{seed}-{k}" for k in range(patients)], VIEWS)
    # a patient's images share most of their score: what makes them one case, not VIEWS independent ones
    base = np.repeat(rng.normal(patient_label, 1.0), VIEWS) + rng.normal(0.0, 0.3, size=label.shape)
    scores = {"a": base, "b": base + rng.normal(0.0, 0.3, size=base.shape)}
    return scores, {"labels": label}, {"patients": patient}


def _case(patients_per_site: int, resamples: int = 200):
    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {"a": {}, "b": {}}
    labels, patients = {}, {}
    for k, site in enumerate(("s1", "s2")):
        site_scores, site_labels, site_patients = _site(patients_per_site, seed=k + 1)
        for method in scores:
            scores[method][site] = {task: site_scores[method] for task in TASKS}
        labels[site] = {task: site_labels["labels"] for task in TASKS}
        patients[site] = {task: site_patients["patients"] for task in TASKS}
    intervals = bootstrap_intervals(
        scores, labels, CaseIndex.from_patients(patients), resamples=resamples, seed=0, reference="a"
    )
    return scores, labels, intervals


def test_the_interval_covers_the_pooled_auc() -> None:
    scores, labels, intervals = _case(60)
    pooled = exact_auc(
        np.concatenate([scores["a"][s]["malignancy"] for s in ("s1", "s2")]),
        np.concatenate([labels[s]["malignancy"] for s in ("s1", "s2")]),
    )
    low, high = intervals["a"]["pooled_auc_ci"]["malignancy"]
    assert low < pooled < high


def test_the_interval_shrinks_with_more_patients() -> None:
    small = _case(30)[2]["a"]["pooled_auc_ci"]["malignancy"]
    large = _case(300)[2]["a"]["pooled_auc_ci"]["malignancy"]
    assert (large[1] - large[0]) < 0.7 * (small[1] - small[0])


def test_the_paired_difference_uses_the_same_resamples() -> None:
    """Correlated methods: the paired difference is much tighter than either method's own interval."""
    intervals = _case(60)[2]
    own = intervals["b"]["pooled_auc_ci"]["malignancy"]
    paired = intervals["b"]["pooled_auc_minus_a_ci"]["malignancy"]
    assert (paired[1] - paired[0]) < 0.6 * (own[1] - own[0])
    assert "pooled_auc_minus_a_ci" not in intervals["a"]


def test_clustering_on_patients_widens_the_interval_over_treating_images_as_independent() -> None:
    scores, labels, clustered = _case(60, resamples=300)
    one_image_each = {
        site: {task: np.array([f"{site}-{i}" for i in range(len(labels[site][task]))]) for task in TASKS}
        for site in labels
    }
    naive = bootstrap_intervals(scores, labels, CaseIndex.from_patients(one_image_each), resamples=300, seed=0)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(clustered["a"]["pooled_auc_ci"]["malignancy"]) > width(naive["a"]["pooled_auc_ci"]["malignancy"])


def test_patient_index_groups_a_patients_images() -> None:
    index = CaseIndex.from_patients({"s": {"malignancy": pd.Series(["p1", "p2", "p1"]).to_numpy()}})
    assert sorted(len(group) for group in index.images_of_patient["s"]["malignancy"]) == [1, 2]


def test_weighted_auc_equals_the_auc_of_the_resample_with_repeated_cases() -> None:
    rng = np.random.default_rng(4)
    scores = np.round(rng.normal(size=40), 1)  # rounded: many ties, which count 1/2
    labels = (rng.uniform(size=40) < 0.4).astype(float)
    weights = rng.integers(0, 3, size=(25, 40)).astype(float)
    expected = [exact_auc(np.repeat(scores, row.astype(int)), np.repeat(labels, row.astype(int))) for row in weights]
    assert weighted_aucs(scores, labels, weights) == pytest.approx(expected, nan_ok=True)
    one_class = weighted_aucs(scores, np.zeros(40), weights[:2])
    assert np.isnan(one_class).all()
