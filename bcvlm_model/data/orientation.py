"""Laterality and view from DICOM tags (with an image-content fallback) and flipping so the chest wall is on the LEFT."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

KNOWN_VIEWS = ("CC", "MLO", "ML", "LM", "XCCL", "XCCM", "AT", "CV", "FB", "SIO", "LMO")


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip().upper()
    return str(value).strip().upper()


def _side(text: str) -> str | None:
    return text if text in {"L", "R"} else None


def laterality_from_tags(ds: Dataset) -> str | None:
    """'L'/'R' from ImageLaterality, then Laterality, then PatientOrientation; None when no tag tells.

    PatientOrientation is read either as a non-standard side letter or, in the DICOM convention for mammography
    (e.g. LCC 'A\\R', RMLO 'P\\FL'), from the column direction, which points away from the imaged breast.
    """
    for keyword in ("ImageLaterality", "Laterality"):
        side = _side(_text(ds, keyword))
        if side:
            return side
    orientation = _text(ds, "PatientOrientation")
    parts = [p for p in orientation.split("\\") if p]
    if len(parts) == 1 and _side(parts[0]):
        return parts[0]
    if len(parts) == 2:
        column = parts[1].replace("F", "").replace("H", "")
        if column in {"L", "R"}:
            return "R" if column == "L" else "L"
    return None


def view_from_tags(ds: Dataset) -> str | None:
    """View (CC, MLO, ...) from ViewPosition, ViewCodeSequence meaning, then a non-standard PatientOrientation."""
    view = _text(ds, "ViewPosition")
    if view:
        return view
    codes = ds.get("ViewCodeSequence")
    if codes:
        meaning = str(codes[0].get("CodeMeaning", "")).lower()
        if "medio-lateral oblique" in meaning or "mediolateral oblique" in meaning:
            return "MLO"
        if "cranio-caudal" in meaning or "craniocaudal" in meaning:
            return "CC"
        if "medio-lateral" in meaning or "mediolateral" in meaning:
            return "ML"
        if "latero-medial" in meaning or "lateromedial" in meaning:
            return "LM"
    for keyword in ("PatientOrientation", "SeriesDescription", "ProtocolName"):
        tokens = _text(ds, keyword).replace("\\", " ").replace("_", " ").split()
        for token in tokens:
            for candidate in ("MLO", "CC", "ML", "LM"):
                if token in {candidate, "L" + candidate, "R" + candidate}:
                    return candidate
    return None


def chest_wall_side_from_tags(ds: Dataset) -> str | None:
    """'left'/'right' where the chest wall is, from a standard PatientOrientation row direction ('A' or 'P')."""
    parts = [p for p in _text(ds, "PatientOrientation").split("\\") if p]
    if len(parts) == 2 and parts[0] and parts[0][0] in {"A", "P"}:
        # Row direction points left-to-right; 'A' means toward the nipple, so the chest wall is on the left.
        return "left" if parts[0][0] == "A" else "right"
    return None


def chest_wall_side_from_content(unit: np.ndarray) -> str:
    """'left'/'right': the half of the image holding more tissue (the breast is widest at the chest wall)."""
    half = unit.shape[1] // 2
    left, right = float(unit[:, :half].sum()), float(unit[:, unit.shape[1] - half :].sum())
    return "left" if left >= right else "right"


def laterality_from_content(unit: np.ndarray) -> str:
    """Fallback laterality assuming the standard display (left breast: chest wall on the left of the image)."""
    return "L" if chest_wall_side_from_content(unit) == "left" else "R"


def orient_chest_wall_left(unit: np.ndarray, chest_wall_side: str) -> np.ndarray:
    """Flip horizontally when the chest wall is on the right, so it always ends up on the LEFT."""
    if chest_wall_side not in {"left", "right"}:
        raise ValueError(f"chest_wall_side must be 'left' or 'right', not {chest_wall_side!r}")
    return unit if chest_wall_side == "left" else unit[:, ::-1]
