"""Groups manifest rows (one per image) into exams and breasts, and names the standard views each exam lacks."""

from __future__ import annotations

import pandas as pd

from bcvlm_model.data.adapters.dicom_folder import patient_id_from_tag

STANDARD_VIEWS: tuple[str, ...] = ("CC", "MLO")
"""Views a screening exam is expected to hold for each breast."""

LATERALITIES: tuple[str, ...] = ("L", "R")

MERGED_STUDY = "per-image-studies"
"""Study key given to a patient's images when each sits in its own one-image study (CBIS-DDSM writes one
StudyInstanceUID per image); such images form one exam unless a (laterality, view) pair repeats."""


def canonical_patient_id(raw: str) -> str:
    """Patient identifier shared by all images of one person (CBIS-DDSM's `Mass-Test_P_00173_RIGHT_CC` -> `P_00173`)."""
    return patient_id_from_tag(str(raw), str(raw))


def _study_keys(rows: pd.DataFrame) -> pd.Series:
    """Study key per row: the study id, except patients whose studies all hold one image with distinct views."""
    study = rows["study_id"].fillna("").astype(str)
    study = study.where(study != "", "unknown-study")
    keys = study.copy()
    for _patient, group in rows.groupby("patient_id", sort=False):
        group_studies = study.loc[group.index]
        if len(group) < 2 or group_studies.duplicated().any():
            continue
        side_view = group["laterality"].astype(str) + "-" + group["view"].astype(str)
        if not side_view.duplicated().any():
            keys.loc[group.index] = MERGED_STUDY
    return keys


def assign_exam_keys(manifest: pd.DataFrame) -> pd.DataFrame:
    """Copy of `manifest` with `exam_id` (patient/study) and `breast_id` (exam/laterality) columns added.

    Raises ValueError naming the missing columns when `patient_id`, `study_id` or `laterality` are absent.
    """
    missing = [column for column in ("patient_id", "study_id", "laterality", "view") if column not in manifest]
    if missing:
        raise ValueError(f"cannot group images into exams: manifest lacks columns {missing}")
    rows = manifest.copy()
    rows["patient_id"] = rows["patient_id"].astype(str).map(canonical_patient_id)
    study = _study_keys(rows)
    rows["exam_id"] = rows["patient_id"] + "/" + study
    laterality = rows["laterality"].fillna("?").astype(str).str.upper()
    rows["breast_id"] = rows["exam_id"] + "/" + laterality
    return rows


def missing_standard_views(views_by_laterality: dict[str, set[str]]) -> list[str]:
    """Standard views absent from one exam, e.g. `["L-MLO", "R-CC"]`; an absent breast lists both of its views."""
    absent = []
    for laterality in LATERALITIES:
        present = views_by_laterality.get(laterality, set())
        absent.extend(f"{laterality}-{view}" for view in STANDARD_VIEWS if view not in present)
    return absent
