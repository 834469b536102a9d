"""Breast-level AUC: mean score / max label per (patient, side), bootstrap clustered on patients, same resamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bcvlm_model import TASKS
from bcvlm_simulation.bootstrap import method_intervals
from bcvlm_simulation.breast_level import breast_cases, breast_level_metrics
from bcvlm_simulation.evaluation import SiteScores

NAN = float("nan")


def _table(rows: list[tuple[str, str, float, float, float]]) -> pd.DataFrame:
    """(patient, laterality, score, malignancy, calcification) per image."""
    frame = pd.DataFrame(rows, columns=["patient_id", "laterality", "score", "malignancy", "calcification"])
    return frame.assign(image_id=[f"img-{k}" for k in range(len(frame))])


def _scores(table: pd.DataFrame, shift: float = 0.0) -> SiteScores:
    """What `evaluate` returns: per task, the labelled rows' scores and labels in table order."""
    entry = SiteScores()
    for task in TASKS:
        keep = table[task].notna()
        entry.scores[task] = table.loc[keep, "score"].to_numpy() + shift
        entry.labels[task] = table.loc[keep, task].to_numpy()
    return entry


HAND_MADE = _table(
    [
        ("P1", "L", 0.90, 1, 1),  # breast P1-L: score (0.90 + 0.50) / 2 = 0.70, label max(1, 0) = 1
        ("P1", "L", 0.50, 0, NAN),  # unlabelled for calcification: P1-L calcification = 0.90, label 1
        ("P1", "R", 0.20, 0, 0),  # P1-R: 0.20, 0
        ("P2", "L", 0.60, 0, 0),  # P2-L: 0.50, 0
        ("P2", "L", 0.40, 0, 1),  # (calcification: P2-L = 0.50, label 1)
        ("P2", "R", 0.30, 1, 0),  # P2-R: 0.30, 1
        ("P3", "L", 0.80, 0, 0),  # P3-L: 0.80, 0
        ("P3", "R", 0.65, 1, 1),  # P3-R: (0.65 + 0.75) / 2 = 0.70, 1
        ("P3", "R", 0.75, 1, 0),
    ]
)


def test_breast_level_auc_equals_the_hand_computed_value() -> None:
    methods, about = breast_level_metrics(
        {"federated": {"s1": _scores(HAND_MADE)}}, {"s1": HAND_MADE}, n_bins=1000, resamples=20, seed=0
    )
    # malignancy: positive breasts 0.70, 0.30, 0.70; negative 0.20, 0.50, 0.80 -> 2 + 1 + 2 of 9 pairs
    assert methods["federated"]["pooled_auc"]["malignancy"] == pytest.approx(5 / 9)
    # calcification: positive 0.90 (P1-L), 0.50 (P2-L), 0.70 (P3-R); negative 0.20, 0.30, 0.80 -> 3 + 2 + 2 of 9
    assert methods["federated"]["pooled_auc"]["calcification"] == pytest.approx(7 / 9)
    assert methods["federated"]["mean_site_auc"]["malignancy"] == pytest.approx(5 / 9)
    assert about == {"breasts": {"malignancy": 6, "calcification": 6}, "images_without_laterality": 0}


def test_an_image_without_laterality_is_its_own_breast_and_is_counted() -> None:
    table = _table([("P1", "L", 0.9, 1, 1), ("P1", "", 0.1, 0, 0), ("P1", "L", 0.2, 0, 0), ("P2", None, 0.3, 0, 0)])
    cases = breast_cases({"s1": _scores(table)}, {"s1": table})
    assert sorted(cases.per_site["s1"].scores["malignancy"]) == pytest.approx([0.1, 0.3, 0.55])
    assert list(cases.per_site["s1"].labels["malignancy"]) == [1.0, 0.0, 0.0]  # P1|L, P1|image:img-1, P2|image:img-3
    assert cases.images_without_laterality == 2


def test_scores_that_do_not_line_up_with_the_table_are_refused() -> None:
    short = _scores(HAND_MADE)
    short.scores["malignancy"] = short.scores["malignancy"][:-1]
    with pytest.raises(ValueError, match="do not line up"):
        breast_cases({"s1": short}, {"s1": HAND_MADE})


def _one_side_per_patient(patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=patients) < 0.4).astype(float)
    scores = rng.normal(labels, 1.0)
    return _table([(f"P{k}", "L", scores[k], labels[k], labels[k]) for k in range(patients)])


def test_breast_level_bootstrap_resamples_patients_not_breasts() -> None:
    one = {site: _one_side_per_patient(40, seed) for seed, site in enumerate(("s1", "s2"))}
    # every patient gets a right breast identical to the left: the AUC is unchanged, and so must be the CI when whole
    # patients are drawn (drawing breasts independently would count each patient twice and narrow it)
    both = {site: pd.concat([t, t.assign(laterality="R")], ignore_index=True) for site, t in one.items()}
    kwargs = {"n_bins": 1000, "resamples": 200, "seed": 3}
    single, _ = breast_level_metrics({"federated": {s: _scores(t) for s, t in one.items()}}, one, **kwargs)
    paired, _ = breast_level_metrics({"federated": {s: _scores(t) for s, t in both.items()}}, both, **kwargs)
    for key in ("pooled_auc_ci", "mean_site_auc_ci"):
        assert paired["federated"][key] == single["federated"][key]
    assert paired["federated"]["pooled_auc_ci"]["malignancy"][1] > paired["federated"]["pooled_auc_ci"]["malignancy"][0]


def test_breast_level_ci_uses_the_image_level_resamples() -> None:
    tables = {site: _one_side_per_patient(30, seed) for seed, site in enumerate(("s1", "s2"))}
    # one image per breast: breast and image cases coincide, so the same patient draws give identical intervals
    scores_of = {
        "federated": {s: _scores(t) for s, t in tables.items()},
        "other": {s: _scores(t.assign(score=t["score"] * 0.5 + np.arange(len(t)) % 3)) for s, t in tables.items()},
    }
    breast, _ = breast_level_metrics(scores_of, tables, n_bins=1000, resamples=150, seed=11)
    image = method_intervals(scores_of, tables, resamples=150, seed=11)
    for method in scores_of:
        for key, value in image[method].items():
            assert breast[method][key] == value, (method, key)
    assert "mean_site_auc_minus_federated_ci" in breast["other"]
