"""Aggregates per-image probabilities into per-breast and per-exam probabilities (mean or max)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd

from bcvlm_model.inference.exams import STANDARD_VIEWS, missing_standard_views

Aggregation = Literal["mean", "max"]
AGGREGATIONS: tuple[str, ...] = ("mean", "max")


def _reduce(values: np.ndarray, how: str) -> float:
    if how == "mean":
        return float(np.mean(values))
    if how == "max":
        return float(np.max(values))
    raise ValueError(f"unknown aggregation '{how}': expected one of {AGGREGATIONS}")


def aggregate_breasts(images: pd.DataFrame, tasks: Sequence[str], how: Aggregation) -> pd.DataFrame:
    """One row per breast: the `how` of its images' `p_<task>` columns, the views it holds and those it lacks."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{how}': expected one of {AGGREGATIONS}")
    rows = []
    for breast_id, group in images.groupby("breast_id", sort=True):
        views = sorted(set(group["view"].astype(str)))
        first = group.iloc[0]
        row = {
            "breast_id": breast_id,
            "exam_id": first["exam_id"],
            "patient_id": first["patient_id"],
            "laterality": first["laterality"],
            "n_images": int(len(group)),
            "views_present": ",".join(views),
            "missing_views": ",".join(view for view in STANDARD_VIEWS if view not in views),
        }
        for task in tasks:
            row[f"p_{task}"] = _reduce(group[f"p_{task}"].to_numpy(dtype=float), how)
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate_exams(
    breasts: pd.DataFrame, images: pd.DataFrame, tasks: Sequence[str], how: Aggregation
) -> pd.DataFrame:
    """One row per exam: the `how` of its breasts' probabilities, plus the standard views it lacks."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{how}': expected one of {AGGREGATIONS}")
    rows = []
    for exam_id, group in breasts.groupby("exam_id", sort=True):
        exam_images = images[images["exam_id"] == exam_id]
        views_by_laterality: dict[str, set[str]] = {}
        for laterality, view in zip(exam_images["laterality"].astype(str), exam_images["view"].astype(str)):
            views_by_laterality.setdefault(laterality, set()).add(view)
        row = {
            "exam_id": exam_id,
            "patient_id": group.iloc[0]["patient_id"],
            "n_images": int(group["n_images"].sum()),
            "lateralities": ",".join(sorted(group["laterality"].astype(str))),
            "missing_views": ",".join(missing_standard_views(views_by_laterality)),
        }
        for task in tasks:
            row[f"p_{task}"] = _reduce(group[f"p_{task}"].to_numpy(dtype=float), how)
        rows.append(row)
    return pd.DataFrame(rows)
