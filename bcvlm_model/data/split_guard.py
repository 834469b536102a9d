"""Refuse a manifest whose patients appear in more than one split (train/val/test): evaluation on trained patients."""

from __future__ import annotations

from itertools import combinations

import pandas as pd

from bcvlm_model.data.errors import DataSourceError


class PatientOverlapError(DataSourceError):
    """Patients have images in two splits; the message names the splits, the count and example patient ids."""


def shared_patients(manifest: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """For each pair of split values present (rows without a split are ignored), the patients found in both."""
    rows = manifest.loc[manifest["split"].notna(), ["patient_id", "split"]].astype(str)
    patients = {split: set(group["patient_id"]) for split, group in rows.groupby("split")}
    shared = {}
    for first, second in combinations(sorted(patients), 2):
        both = sorted(patients[first] & patients[second])
        if both:
            shared[(first, second)] = both
    return shared


def check_patients_disjoint(manifest: pd.DataFrame, origin: str) -> None:
    """Raise PatientOverlapError when any patient_id has images in two different splits of `manifest`."""
    shared = shared_patients(manifest)
    if not shared:
        return
    parts = [
        f"{len(ids)} in both '{first}' and '{second}' (e.g. {', '.join(ids[:3])})"
        for (first, second), ids in shared.items()
    ]
    raise PatientOverlapError(
        f"{origin}: patient_id values appear in more than one split: {'; '.join(parts)}. A model would be scored on "
        "patients it was trained or tuned on; give every patient's images one split (bcvlm prepare does) and retry"
    )
