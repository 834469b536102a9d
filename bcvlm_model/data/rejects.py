"""The rejects file: one row per unusable image or table row, with the stage that rejected it and why."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bcvlm_model.atomic_io import atomic_write_text

REJECT_COLUMNS: tuple[str, ...] = ("image_id", "path", "stage", "reason")
"""Columns of rejects.csv. stage: 'table' (adapter row), 'header' (DICOM tags) or 'pixels' (decode/preprocess)."""


@dataclass
class RejectLog:
    """Collects rejects while a run continues."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, image_id: object, path: object, stage: str, reason: str) -> None:
        """Record one rejected item."""
        self.rows.append({"image_id": "" if image_id is None else str(image_id),
                          "path": "" if path is None else str(path), "stage": stage, "reason": reason})

    def extend(self, other: "RejectLog") -> None:
        """Append another log's rows."""
        self.rows.extend(other.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self) -> pd.DataFrame:
        """The rejects as a DataFrame with REJECT_COLUMNS."""
        return pd.DataFrame(self.rows, columns=list(REJECT_COLUMNS))

    def counts_by_reason(self) -> dict[str, int]:
        """How many rejects share each reason's leading phrase (text before '(' or ':')."""
        counts: dict[str, int] = {}
        for row in self.rows:
            key = row["reason"].split("(")[0].split(":")[0].strip()
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
