"""Tests of metadata CSV overrides (image / study / patient keys) applied over DICOM-tag metadata."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bcvlm_model.data.manifest import MANIFEST_COLUMNS
from bcvlm_model.inference.metadata_overrides import (
    MetadataOverrideError,
    apply_metadata_overrides,
    read_metadata_overrides,
)


def _manifest() -> pd.DataFrame:
    rows = []
    for image_id, patient, side in [
        ("a", "Mass-Test_P_00173_RIGHT_CC", "R"),
        ("b", "Mass-Test_P_00173_LEFT_CC", "L"),
        ("c", "900", "L"),
    ]:
        row = {column: None for column in MANIFEST_COLUMNS}
        row.update(
            source="dicom_folder",
            site_id="local",
            patient_id=patient,
            study_id=f"s-{image_id}",
            image_id=image_id,
            path=f"/x/{image_id}.dcm",
            laterality=side,
            view="CC",
            age=float("nan"),
            implant=float("nan"),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def test_patient_then_image_overrides(tmp_path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("patient_id,image_id,age,implant,manufacturer\nP_00173,,61,0,\n,b,,1,Hologic\n")
    updated = apply_metadata_overrides(_manifest(), read_metadata_overrides(csv)).set_index("image_id")
    assert updated.loc["a", "age"] == 61.0 and updated.loc["b", "age"] == 61.0
    assert updated.loc["a", "implant"] == 0.0 and updated.loc["b", "implant"] == 1.0  # image key wins
    assert updated.loc["b", "manufacturer"] == "Hologic" and pd.isna(updated.loc["a", "manufacturer"])
    assert math.isnan(updated.loc["c", "age"])  # untouched: stays "not recorded"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("age\n61\n", "needs a key column"),
        ("image_id,malignancy\na,1\n", "unknown column"),
        ("image_id,laterality\na,X\n", "invalid manifest"),
    ],
)
def test_bad_csv_is_named(tmp_path, text: str, message: str) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text(text)
    with pytest.raises(MetadataOverrideError, match=message):
        apply_metadata_overrides(_manifest(), read_metadata_overrides(csv))
