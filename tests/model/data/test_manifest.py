"""Manifest schema: round trip, coercion, and errors that name the column."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bcvlm_model.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    empty_manifest,
    read_manifest,
    validate,
    write_manifest,
)


def _row(**values):
    row = {c: None for c in MANIFEST_COLUMNS}
    row.update(
        source="rsna",
        site_id=2,
        patient_id=10,
        study_id=10,
        image_id=462822612,
        path="/x.dcm",
        laterality="L",
        view="CC",
        age=61.0,
        malignancy=1,
    )
    row.update(values)
    return row


def test_round_trip_keeps_ids_as_strings_and_nan_labels(tmp_path):
    df = pd.DataFrame([_row(), _row(image_id="0042", laterality="R", malignancy=None)])
    write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert list(back.columns) == list(MANIFEST_COLUMNS)
    assert back["image_id"].tolist() == ["462822612", "0042"]
    assert back["site_id"].tolist() == ["2", "2"]
    assert back.loc[0, "malignancy"] == 1.0 and math.isnan(back.loc[1, "malignancy"])
    assert back.loc[1, "density"] is None


def test_empty_manifest_has_all_columns():
    assert list(empty_manifest().columns) == list(MANIFEST_COLUMNS)


@pytest.mark.parametrize(
    "column, value",
    [
        ("laterality", "left"),
        ("malignancy", 2),
        ("density", "E"),
        ("age", "old"),
        ("split", "training"),
    ],
)
def test_bad_values_name_the_column(column, value):
    with pytest.raises(ManifestError, match=f"'{column}'"):
        validate(pd.DataFrame([_row(**{column: value})]))


def test_duplicate_image_ids_and_missing_columns_fail():
    with pytest.raises(ManifestError, match="duplicated"):
        validate(pd.DataFrame([_row(), _row()]))
    with pytest.raises(ManifestError, match="missing column.*oracle_malignancy"):
        validate(pd.DataFrame([_row()]).drop(columns=["oracle_malignancy"]))


def test_a_relative_image_path_is_relative_to_the_manifest_folder(tmp_path, monkeypatch):
    df = pd.DataFrame([_row(path="images/a.dcm"), _row(image_id="b", path="/abs/b.dcm")])
    write_manifest(df, tmp_path / "prepared" / "m.csv")
    monkeypatch.chdir(tmp_path)  # the reader runs elsewhere
    back = read_manifest("prepared/m.csv")
    assert back["path"].tolist() == [str(tmp_path / "prepared" / "images" / "a.dcm"), "/abs/b.dcm"]
