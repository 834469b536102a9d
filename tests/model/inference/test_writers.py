"""Tests of the CSV / JSON output writers and the binary calls at the operating point."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bcvlm_model.inference.results import PredictionResult, SkippedFile, add_binary_calls
from bcvlm_model.inference.writers import skipped_csv_path, write_predictions

TASKS = ("malignancy", "calcification")


def _result() -> PredictionResult:
    images = pd.DataFrame(
        {"image_id": ["a", "b"], "exam_id": ["e", "e"], "p_malignancy": [0.2, 0.7], "p_calcification": [0.1, np.nan]}
    )
    images = add_binary_calls(images, {"malignancy": 0.5, "calcification": None}, TASKS)
    breasts = pd.DataFrame({"breast_id": ["e/L"], "exam_id": ["e"], "p_malignancy": [0.7], "p_calcification": [0.1]})
    exams = pd.DataFrame({"exam_id": ["e"], "p_malignancy": [0.7], "p_calcification": [0.1]})
    return PredictionResult(
        images, breasts, exams, [SkippedFile("x.dcm", "not a mammogram (Modality CT)")], {"aggregation": "max"}
    )


def test_binary_calls_follow_threshold() -> None:
    images = _result().images
    assert images["call_malignancy"].tolist() == [0, 1]
    assert images["call_calcification"].tolist() == [None, None]


def test_json_output_has_all_levels_and_skipped(tmp_path) -> None:
    out = tmp_path / "pred.json"
    assert write_predictions(_result(), out) == [out]
    payload = json.loads(out.read_text())
    assert [row["image_id"] for row in payload["images"]] == ["a", "b"]
    assert payload["images"][1]["p_calcification"] is None  # NaN -> null, valid JSON
    assert payload["breasts"][0]["breast_id"] == "e/L"
    assert payload["exams"][0]["p_malignancy"] == 0.7
    assert payload["skipped"] == [{"path": "x.dcm", "reason": "not a mammogram (Modality CT)", "image_id": None}]
    assert payload["run"] == {"aggregation": "max"}


def test_csv_output_has_level_column_and_side_file(tmp_path) -> None:
    out = tmp_path / "pred.csv"
    written = write_predictions(_result(), out)
    assert written == [out, skipped_csv_path(out)]
    table = pd.read_csv(out)
    assert table["level"].tolist() == ["image", "image", "breast", "exam"]
    assert pd.read_csv(skipped_csv_path(out))["reason"].tolist() == ["not a mammogram (Modality CT)"]


def test_unknown_extension_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.csv or \.json"):
        write_predictions(_result(), tmp_path / "pred.xlsx")
