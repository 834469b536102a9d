"""Patient identity in adapters: the DICOM PatientID where a file has one, and one split per patient."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from bcvlm_model.data.dicom_read import read_dicom
from bcvlm_model.data.errors import DicomRejected

LOGGER = logging.getLogger(__name__)

CBIS_PATIENT_ID = re.compile(r"^(?:Calc|Mass)-(?:Training|Test)_(P_\d+)_(?:LEFT|RIGHT)_(?:CC|MLO)$")
SPLIT_PRECEDENCE = ("test", "val", "train")
"""A patient found in several splits goes to the first of these it has rows in: test rows are never trained on."""


def patient_id_from_tag(value: str | None, fallback: str) -> str:
    """PatientID, except CBIS-DDSM's per-image ids ('Mass-Test_P_00173_RIGHT_CC') which become 'P_00173'."""
    if not value:
        return fallback
    match = CBIS_PATIENT_ID.match(value)
    return match.group(1) if match else value


def dicom_patient_id(path: str | Path) -> str | None:
    """The (CBIS-normalised) PatientID of a DICOM file; None when the file or the tag is missing or unreadable."""
    if not Path(path).is_file():
        return None
    try:
        ds = read_dicom(path, stop_before_pixels=True)
    except DicomRejected:
        return None  # the pixel stage rejects the file with its reason
    value = str(ds.get("PatientID", "") or "").strip()
    return patient_id_from_tag(value, "") or None


def unify_patient_splits(rows: list[dict[str, Any]], source: str) -> list[str]:
    """Give every patient one split: a patient with rows in several splits moves wholly to the first of
    SPLIT_PRECEDENCE they have rows in. Returns the moved patients (logged once as a warning)."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        if row.get("split"):
            splits.setdefault(str(row["patient_id"]), set()).add(str(row["split"]))
    target = {
        patient: next(s for s in SPLIT_PRECEDENCE if s in found) for patient, found in splits.items() if len(found) > 1
    }
    for row in rows:
        if str(row["patient_id"]) in target:
            row["split"] = target[str(row["patient_id"])]
    if target:
        moved = sorted(target)
        LOGGER.warning(
            "%s: %d patient(s) had images in several splits of the data set (e.g. %s); each now has all "
            "images in one split (test before val before train), so no patient is both trained and "
            "evaluated on",
            source,
            len(moved),
            ", ".join(f"{p} -> {target[p]}" for p in moved[:3]),
        )
    return sorted(target)
