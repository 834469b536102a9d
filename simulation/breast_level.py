"""Breast-level cases from image scores: one case per (patient, side), scored by the mean of its images, labelled by
their max (a breast with one positive image is a positive breast), the unit RSNA screening is scored on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from bcvlm_model import TASKS
from bcvlm_simulation.bootstrap import patient_intervals
from bcvlm_simulation.evaluation import SiteScores, summarise_method

SIDES = ("L", "R")
"""Laterality values that name a breast; any other value (or none) makes the image its own case."""


@dataclass
class BreastCases:
    """Breast-level scores of one method per site, the patient of each breast per site and task (the bootstrap's
    cluster), and how many labelled images had no usable laterality (each then counts as its own breast)."""

    per_site: dict[str, SiteScores] = field(default_factory=dict)
    patients: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    images_without_laterality: int = 0


def breast_keys(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(breast key of each row, True where the row's laterality is usable). A row without L/R laterality gets a key of
    its own (patient + image id): pooling it with the patient's other images could mix the two breasts."""
    side = table["laterality"].astype("string").str.strip().str.upper().fillna("")
    usable = side.isin(SIDES).to_numpy()
    patient = table["patient_id"].astype(str).to_numpy()
    by_side = patient + "|" + side.to_numpy(dtype=str)
    by_image = patient + "|image:" + table["image_id"].astype(str).to_numpy()
    return np.where(usable, by_side, by_image), usable


def breast_cases(image_scores: Mapping[str, SiteScores], test_tables: Mapping[str, pd.DataFrame]) -> BreastCases:
    """Group each site's image scores (test-table order, unlabelled rows dropped per task, as `evaluate` returns them)
    into breasts. ValueError when the scores do not line up with the table's labelled rows."""
    out = BreastCases()
    for site, entry in image_scores.items():
        table = test_tables[site].reset_index(drop=True)
        keys, usable = breast_keys(table)
        out.per_site[site] = SiteScores()
        out.patients[site] = {}
        counted = np.zeros(len(table), dtype=bool)
        for task in TASKS:
            labelled = table[task].notna().to_numpy()
            scores = np.asarray(entry.scores.get(task, np.zeros(0)), dtype=float)
            labels = np.asarray(entry.labels.get(task, np.zeros(0)), dtype=float)
            expected = table.loc[labelled, task].to_numpy(dtype=float)
            if len(scores) != labelled.sum() or not np.array_equal(labels, expected):
                raise ValueError(
                    f"site {site}, {task}: {len(scores)} image scores do not line up with the test table's "
                    f"{int(labelled.sum())} labelled rows (scores must be in test-table order, unlabelled rows dropped)"
                )
            frame = pd.DataFrame(
                {"breast": keys[labelled], "patient": table.loc[labelled, "patient_id"].astype(str), "score": scores}
            ).assign(label=labels)
            grouped = frame.groupby("breast", sort=True).agg(
                patient=("patient", "first"), score=("score", "mean"), label=("label", "max")
            )
            out.per_site[site].scores[task] = grouped["score"].to_numpy()
            out.per_site[site].labels[task] = grouped["label"].to_numpy()
            out.patients[site][task] = grouped["patient"].to_numpy()
            counted |= labelled
        out.images_without_laterality += int((counted & ~usable).sum())
    return out


def breast_level_metrics(
    scores_of: Mapping[str, Mapping[str, SiteScores]],
    test_tables: Mapping[str, pd.DataFrame],
    *,
    n_bins: int,
    resamples: int,
    seed: int,
    reference: str = "federated",
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per method: breast-level pooled / per-site / mean per-site AUC with the patient-clustered bootstrap CIs (the
    image-level bootstrap's seed, so the same patients are drawn in every resample), and a summary of the cases."""
    cases = {method: breast_cases(per_site, test_tables) for method, per_site in scores_of.items()}
    if not cases:
        return {}, {}
    methods: dict[str, dict[str, Any]] = {}
    for method, breast in cases.items():
        summary = summarise_method(breast.per_site, n_bins)
        summary.pop("roc", None)  # the report draws image-level ROC curves only
        methods[method] = summary
    first = next(iter(cases.values()))
    intervals = patient_intervals(
        {method: breast.per_site for method, breast in cases.items()},
        first.patients,
        resamples=resamples,
        seed=seed,
        reference=reference,
    )
    for method, entry in intervals.items():
        methods[method].update(entry)
    about = {
        "breasts": {task: sum(len(s.labels[task]) for s in first.per_site.values()) for task in TASKS},
        "images_without_laterality": first.images_without_laterality,
    }
    return methods, about
