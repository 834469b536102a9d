"""VinDr-Mammo adapter on its real table layout: patient ids, metadata.csv (present, partial, absent), bad findings."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from bcvlm_model.data.adapters import build_manifest
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_testing.mg_fixtures import breast_pixels, write_mg

PIXELS = breast_pixels(32, 16)
BREAST_HEADER = "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split\n"
FINDING_HEADER = (
    "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,"
    "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split\n"
)
METADATA = (
    "SOP Instance UID,Series Instance UID,Patient's Age,Manufacturer,Manufacturer's Model Name\n"
    "i1,se1,053Y,SIEMENS,Mammomat Inspiration\ni2,se1,053Y,SIEMENS,Mammomat Inspiration\n"
    "i3,se2,061Y,IMS GIOTTO S.p.A.,GIOTTO IMAGE 3DL\n"
)


def _vindr(root: Path, patients: dict[str, str], metadata: str | None = METADATA, findings: str = "") -> Path:
    """Studies s1 (i1, i2; training) and s2 (i3; test); `patients` maps study -> DICOM PatientID ('' = none)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "breast-level_annotations.csv").write_text(
        BREAST_HEADER + "s1,se1,i1,L,CC,3518,2800,BI-RADS 1,DENSITY C,training\n"
        "s1,se1,i2,L,MLO,3518,2800,BI-RADS 1,DENSITY C,training\n"
        "s2,se2,i3,R,CC,3518,2800,BI-RADS 4,DENSITY B,test\n"
    )
    (root / "finding_annotations.csv").write_text(FINDING_HEADER + findings)
    if metadata is not None:
        (root / "metadata.csv").write_text(metadata)
    for study, image in (("s1", "i1"), ("s1", "i2"), ("s2", "i3")):
        write_mg(root / "images" / study / f"{image}.dicom", PIXELS, PatientID=patients[study])
    return root


def _manifest(root: Path):
    return build_manifest(DataSourceConfig(kind="vindr", root=str(root))).manifest.set_index("image_id")


def test_patient_id_comes_from_the_dicom_patient_id(tmp_path):
    m = _manifest(_vindr(tmp_path, {"s1": "A", "s2": "B"}))
    assert m["patient_id"].to_dict() == {"i1": "A", "i2": "A", "i3": "B"}
    assert m.loc["i1", "study_id"] == "s1"


def test_a_patient_with_a_training_and_a_test_study_is_all_test(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m = _manifest(_vindr(tmp_path, {"s1": "A", "s2": "A"}))
    assert set(m["split"]) == {"test"}
    assert "1 patient(s) had images in several splits" in caplog.text


def test_without_a_patient_id_the_study_is_the_patient_and_it_is_said(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m = _manifest(_vindr(tmp_path, {"s1": "", "s2": ""}))
    assert m["patient_id"].to_dict() == {"i1": "s1", "i2": "s1", "i3": "s2"}
    assert "3 image(s) have no readable DICOM PatientID" in caplog.text


def test_metadata_fills_age_manufacturer_and_machine_id_from_the_model(tmp_path):
    m = _manifest(_vindr(tmp_path, {"s1": "A", "s2": "B"}))
    assert m.loc["i1", "age"] == 53.0 and m.loc["i3", "manufacturer"] == "IMS GIOTTO S.p.A."
    assert m["machine_id"].to_dict() == {
        "i1": "Mammomat Inspiration",
        "i2": "Mammomat Inspiration",
        "i3": "GIOTTO IMAGE 3DL",
    }


def test_missing_metadata_csv_is_said_once_naming_what_is_lost(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        m = _manifest(_vindr(tmp_path, {"s1": "A", "s2": "B"}, metadata=None))
    lines = [r.getMessage() for r in caplog.records if "metadata.csv" in r.getMessage()]
    assert len(lines) == 1 and "not found" in lines[0]
    assert "age" in lines[0] and "manufacturer" in lines[0] and "model" in lines[0]
    assert m["age"].isna().all() and m["manufacturer"].isna().all() and m["machine_id"].isna().all()


def test_metadata_without_a_model_column_names_the_missing_column(tmp_path, caplog):
    partial = "SOP Instance UID,Patient's Age,Manufacturer\ni1,053Y,SIEMENS\ni2,053Y,SIEMENS\ni3,061Y,SIEMENS\n"
    with caplog.at_level(logging.WARNING):
        m = _manifest(_vindr(tmp_path, {"s1": "A", "s2": "B"}, metadata=partial))
    assert "no column for model ('Manufacturer's Model Name')" in caplog.text
    assert m.loc["i1", "manufacturer"] == "SIEMENS" and m["machine_id"].isna().all()


@pytest.mark.parametrize("bad", ["['Mass'", "{'Mass': 1}"])
def test_an_image_with_an_unparseable_finding_is_rejected_once(tmp_path, bad):
    findings = (
        f's1,se1,i1,L,CC,3518,2800,BI-RADS 1,DENSITY C,"{bad}",,,,,,training\n'
        f's1,se1,i1,L,CC,3518,2800,BI-RADS 1,DENSITY C,"{bad}",,,,,,training\n'
        "s2,se2,i3,R,CC,3518,2800,BI-RADS 4,DENSITY B,['Suspicious Calcification'],BI-RADS 4,1,2,3,4,test\n"
    )
    result = build_manifest(
        DataSourceConfig(kind="vindr", root=str(_vindr(tmp_path, {"s1": "A", "s2": "B"}, findings=findings)))
    )
    m = result.manifest.set_index("image_id")
    assert sorted(m.index) == ["i2", "i3"] and m.loc["i3", "calcification"] == 1.0
    assert [r["image_id"] for r in result.rejects.rows] == ["i1"]
    assert not math.isnan(m.loc["i2", "calcification"])
