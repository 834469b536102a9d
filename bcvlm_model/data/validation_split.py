"""Carves a patient-level validation split out of a manifest's training rows (seeded, stratified by label)."""

from __future__ import annotations

import numpy as np
import pandas as pd

STRATIFY_LABEL = "malignancy"
"""Patients are stratified by whether any of their images is labelled malignant (unlabelled patients form a stratum)."""


def _patient_strata(rows: pd.DataFrame) -> pd.Series:
    """Stratum per patient id: "1" if any image is positive, "0" if all labelled images are negative, else "none"."""
    labels = pd.to_numeric(rows[STRATIFY_LABEL], errors="coerce")
    by_patient = labels.groupby(rows["patient_id"].astype(str))
    positive = by_patient.max()
    labelled = by_patient.count() > 0
    return pd.Series(np.where(~labelled, "none", np.where(positive >= 1, "1", "0")), index=positive.index, dtype=object)


def validation_patients(rows: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """Patient ids to move to validation: in each stratum round(fraction x patients), at least one train patient kept.

    Whole patients only (no patient in both splits); the choice depends only on the patient ids, their labels and
    `seed`, so the same manifest always gives the same split.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0 or rows.empty:
        return []
    strata = _patient_strata(rows)
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for stratum in sorted(set(strata)):
        members = sorted(strata.index[strata == stratum])
        count = min(int(round(len(members) * fraction)), len(members) - 1)
        if count > 0:
            chosen.extend(str(patient) for patient in rng.permutation(members)[:count])
    return sorted(chosen)


def with_default_validation(
    manifest: pd.DataFrame, fraction: float, seed: int, train_split: str = "train", val_split: str = "val"
) -> pd.DataFrame:
    """The manifest unchanged when it has `val_split` rows, else a copy whose chosen training patients are moved to
    `val_split` (see `validation_patients`)."""
    if (manifest["split"] == val_split).any():
        return manifest
    train = manifest[manifest["split"] == train_split]
    moved = set(validation_patients(train, fraction, seed))
    if not moved:
        return manifest
    updated = manifest.copy()
    updated.loc[(updated["split"] == train_split) & updated["patient_id"].astype(str).isin(moved), "split"] = val_split
    return updated
