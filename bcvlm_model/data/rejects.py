"""The rejects file: one row per unusable image or table row, with the stage that rejected it and why."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bcvlm_model.atomic_io import atomic_write_text

REJECT_COLUMNS: tuple[str, ...] = ("image_id", "path", "stage", "reason")
"""Columns of rejects.csv. stage: 'scan' (folder entry: broken link, loop, unreadable folder), 'table' (adapter row),
'header' (DICOM tags) or 'pixels' (decode/preprocess)."""


TABLE_LOCATION = re.compile(r"^[^:]*\.csv( line \d+)?: ")
FIELD_PREFIX = re.compile(r"^field '[^']*'(: )?")


def reason_phrase(reason: str) -> str:
    """The leading phrase of a reject reason, without where it happened or the offending value."""
    text = TABLE_LOCATION.sub("", reason)
    named = FIELD_PREFIX.match(text)
    if named:  # generic CSV: "field 'age': unparseable age 'sixty'" -> "field 'age': unparseable age"
        if named.group(1) is None:
            return text.split("(")[0].strip()
        return f"{named.group(0)}{reason_phrase(text[named.end() :])}"
    return re.split(r"[(:]| '", text, maxsplit=1)[0].strip() or reason


@dataclass
class RejectLog:
    """Collects rejects while a run continues."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, image_id: object, path: object, stage: str, reason: str) -> None:
        """Record one rejected item."""
        self.rows.append(
            {
                "image_id": "" if image_id is None else str(image_id),
                "path": "" if path is None else str(path),
                "stage": stage,
                "reason": reason,
            }
        )

    def extend(self, other: "RejectLog") -> None:
        """Append another log's rows."""
        self.rows.extend(other.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self) -> pd.DataFrame:
        """The rejects as a DataFrame with REJECT_COLUMNS."""
        return pd.DataFrame(self.rows, columns=list(REJECT_COLUMNS))

    def counts_by_reason(self) -> dict[str, int]:
        """How many rejects share each reason's leading phrase: without the table location ('train.csv line 5: ')
        and cut before '(', ':' or a quoted value, so 'unparseable laterality' counts every bad laterality."""
        counts: dict[str, int] = {}
        for row in self.rows:
            key = reason_phrase(row["reason"])
            counts[key] = counts.get(key, 0) + 1
        return counts


def write_rejects(log: RejectLog, path: str | os.PathLike[str]) -> Path:
    """Write rejects.csv atomically (header only when there are none)."""
    buffer = io.StringIO()
    log.to_frame().to_csv(buffer, index=False)
    return atomic_write_text(path, buffer.getvalue())


def read_rejects(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a rejects.csv (all columns as strings)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)
