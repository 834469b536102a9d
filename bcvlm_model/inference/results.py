"""The result of one `bcvlm predict` run: per-image, per-breast and per-exam tables, binary calls and skipped files."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

LEVELS: tuple[str, ...] = ("image", "breast", "exam")


@dataclass
class SkippedFile:
    """A file that produced no prediction, and why."""

    path: str
    reason: str
    image_id: str | None = None


@dataclass
class PredictionResult:
    """Tables of one prediction run; probability columns are `p_<task>`, binary calls `call_<task>` (1/0/None)."""

    images: pd.DataFrame
    breasts: pd.DataFrame
    exams: pd.DataFrame
    skipped: list[SkippedFile] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)

    def table(self, level: str) -> pd.DataFrame:
        """The table of one level: "image", "breast" or "exam"."""
        if level not in LEVELS:
            raise ValueError(f"unknown level '{level}': expected one of {LEVELS}")
        return {"image": self.images, "breast": self.breasts, "exam": self.exams}[level]


def add_binary_calls(table: pd.DataFrame, thresholds: Mapping[str, float | None], tasks: Sequence[str]) -> pd.DataFrame:
    """Copy of `table` with `call_<task>` = 1 when p >= threshold, 0 below, None when the task has no operating point."""
    called = table.copy()
    for task in tasks:
        threshold = thresholds.get(task)
        probabilities = called[f"p_{task}"] if f"p_{task}" in called else pd.Series(dtype=float)
        if threshold is None or (isinstance(threshold, float) and math.isnan(threshold)):
            called[f"call_{task}"] = pd.Series([None] * len(called), index=called.index, dtype=object)
        else:
            called[f"call_{task}"] = (probabilities >= threshold).astype(int)
    return called
