"""Leakage guard: refuses report fields that encode the label or the reading outcome, unless explicitly allowed."""

from __future__ import annotations

import re
from typing import Iterable

LEAKING_FIELD_PATTERNS: tuple[tuple[str, str], ...] = (
    ("cancer", "it is the malignancy label itself"),
    ("malignan", "it is the malignancy label (or how it was derived)"),
    ("calcif", "it is the suspicious-calcification label"),
    ("biops", "a biopsy is ordered because of the reading and its result is the ground truth"),
    ("invasive", "invasiveness is only known for confirmed cancers"),
    ("birads", "the BI-RADS assessment is the radiologist's reading of this very exam (the outcome to predict)"),
    ("difficultnegative", "it marks negatives that a reader flagged: derived from the reading outcome"),
    ("finding", "finding categories, finding BI-RADS and finding boxes are the reading outcome"),
    ("oracle", "synthetic ground-truth probabilities are the label"),
    ("label", "label columns are the training targets"),
    ("outcome", "outcome columns are the training targets"),
    ("pathology", "pathology is the ground truth"),
    ("assessment", "an assessment is the reading outcome"),
)
"""(normalised-name fragment, reason) pairs; a field whose normalised name contains a fragment is refused."""


class LeakageError(ValueError):
    """A report field would leak the label or the reading outcome into the text the model reads."""


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def leakage_reason(field_name: str) -> str | None:
    """Why `field_name` leaks the label/outcome, or None when it is safe to render."""
    normalised = _normalise(field_name)
    for fragment, reason in LEAKING_FIELD_PATTERNS:
        if fragment in normalised:
            return reason
    return None


def check_report_fields(fields: Iterable[str], allow_label_fields: bool = False) -> None:
    """Raise LeakageError listing every leaking field (and why) unless `allow_label_fields` is set."""
    if allow_label_fields:
        return
    problems = [f"'{name}' ({reason})" for name in fields if (reason := leakage_reason(name)) is not None]
    if problems:
        raise LeakageError(
            "report fields refused by the leakage guard: "
            + "; ".join(problems)
            + ". The model would read its own label from the text. Remove them from text.fields, or set "
            "text.allow_label_fields=true only for a deliberate leakage experiment."
        )
