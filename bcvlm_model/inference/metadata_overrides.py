"""Applies a user's metadata CSV (keyed by image, study or patient) over the metadata read from DICOM tags."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bcvlm_model.data.adapters.common import DataSourceError, read_table
from bcvlm_model.data.manifest import METADATA_TEXT_FIELDS, validate
from bcvlm_model.inference.exams import canonical_patient_id

KEY_COLUMNS: tuple[str, ...] = ("patient_id", "study_id", "image_id")
"""Keys of a metadata CSV, from least to most specific: a more specific key wins where several match."""


class MetadataOverrideError(ValueError):
    """The metadata CSV is unusable; the message names the file and the problem."""


def read_metadata_overrides(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the CSV (all cells as text) and check it has a key column and only known metadata columns."""
    source = Path(path)
    try:
        table = read_table(source, required=(), field="metadata CSV")
    except DataSourceError as exc:
        raise MetadataOverrideError(str(exc)) from exc
    keys = [column for column in KEY_COLUMNS if column in table.columns]
    if not keys:
        raise MetadataOverrideError(f"{source}: needs a key column, one of {', '.join(KEY_COLUMNS)}")
    unknown = [c for c in table.columns if c not in KEY_COLUMNS and c not in METADATA_TEXT_FIELDS]
    if unknown:
        raise MetadataOverrideError(
            f"{source}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(KEY_COLUMNS + METADATA_TEXT_FIELDS)}"
        )
    return table


def apply_metadata_overrides(
    manifest: pd.DataFrame, overrides: pd.DataFrame, origin: str = "metadata CSV"
) -> pd.DataFrame:
    """Copy of `manifest` where every non-empty override cell replaces the matching rows' value; re-validated.

    A row of the CSV matches manifest rows on its most specific non-empty key (image_id > study_id > patient_id;
    patient ids compare after CBIS-DDSM canonicalisation). Rows are applied least specific first.
    """
    updated = manifest.copy()
    fields = [c for c in overrides.columns if c in METADATA_TEXT_FIELDS]
    for column in fields:
        updated[column] = updated[column].astype(object)
    patient_keys = updated["patient_id"].astype(str).map(canonical_patient_id)

    def specificity(row: pd.Series) -> int:
        return max((rank for rank, key in enumerate(KEY_COLUMNS) if str(row.get(key, "")).strip()), default=-1)

    ranked = sorted(overrides.to_dict(orient="records"), key=lambda row: specificity(pd.Series(row)))
    for row in ranked:
        rank = specificity(pd.Series(row))
        if rank < 0:
            continue
        key = KEY_COLUMNS[rank]
        value = str(row[key]).strip()
        if key == "patient_id":
            match = (patient_keys == canonical_patient_id(value)) | (updated["patient_id"].astype(str) == value)
        else:
            match = updated[key].astype(str) == value
        for column in fields:
            cell = str(row.get(column, "")).strip()
            if cell:
                updated.loc[match, column] = cell
    try:
        return validate(updated, origin=origin)
    except ValueError as exc:
        raise MetadataOverrideError(f"{origin}: override gives an invalid manifest: {exc}") from exc
