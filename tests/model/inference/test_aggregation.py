"""Tests of exam grouping, missing-view detection and per-breast / per-exam aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bcvlm_model.inference.aggregation import aggregate_breasts, aggregate_exams
from bcvlm_model.inference.exams import assign_exam_keys, canonical_patient_id

TASKS = ("malignancy", "calcification")


def _images() -> pd.DataFrame:
    rows = [
        # CBIS-DDSM style: one PatientID and StudyInstanceUID per image.
        ("Mass-Test_P_00173_RIGHT_CC", "1.2.1", "a", "R", "CC", 0.2, 0.1),
        ("Mass-Test_P_00173_RIGHT_MLO", "1.2.2", "b", "R", "MLO", 0.6, 0.3),
        ("Mass-Test_P_00173_LEFT_CC", "1.2.3", "c", "L", "CC", 0.1, 0.5),
        # Ordinary exam missing its left MLO.
        ("77", "s1", "d", "L", "CC", 0.4, 0.2),
        ("77", "s1", "e", "R", "CC", 0.3, 0.9),
        ("77", "s1", "f", "R", "MLO", 0.5, 0.7),
    ]
    frame = pd.DataFrame(
        rows, columns=["patient_id", "study_id", "image_id", "laterality", "view", "p_malignancy", "p_calcification"]
    )
    return assign_exam_keys(frame)


def test_cbis_patient_ids_collapse_and_exams_group() -> None:
    assert canonical_patient_id("Calc-Training_P_01234_LEFT_MLO") == "P_01234"
    assert canonical_patient_id("12345") == "12345"
    images = _images()
    assert sorted(images["exam_id"].unique()) == ["77/s1", "P_00173/per-image-studies"]
    assert images.loc[images["image_id"] == "c", "breast_id"].item() == "P_00173/per-image-studies/L"


@pytest.mark.parametrize("how", ["mean", "max"])
def test_breast_and_exam_aggregation(how: str) -> None:
    images = _images()
    reduce = np.mean if how == "mean" else np.max
    breasts = aggregate_breasts(images, TASKS, how).set_index("breast_id")
    right = breasts.loc["P_00173/per-image-studies/R"]
    assert right["p_malignancy"] == pytest.approx(reduce([0.2, 0.6]))
    assert right["n_images"] == 2 and right["missing_views"] == ""
    assert breasts.loc["P_00173/per-image-studies/L", "missing_views"] == "MLO"
    exams = aggregate_exams(breasts.reset_index(), images, TASKS, how).set_index("exam_id")
    cbis = exams.loc["P_00173/per-image-studies"]
    assert cbis["p_calcification"] == pytest.approx(reduce([reduce([0.1, 0.3]), 0.5]))
    assert cbis["missing_views"] == "L-MLO"
    assert exams.loc["77/s1", "n_images"] == 3
    assert exams.loc["77/s1", "lateralities"] == "L,R"


def test_unknown_aggregation_and_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate_breasts(_images(), TASKS, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="study_id"):
        assign_exam_keys(pd.DataFrame({"patient_id": ["1"], "laterality": ["L"], "view": ["CC"]}))


def test_one_image_studies_with_repeated_views_stay_separate_exams() -> None:
    priors = pd.DataFrame(
        {"patient_id": ["9", "9"], "study_id": ["2024", "2025"], "laterality": ["L", "L"], "view": ["CC", "CC"]}
    )
    assert sorted(assign_exam_keys(priors)["exam_id"]) == ["9/2024", "9/2025"]
