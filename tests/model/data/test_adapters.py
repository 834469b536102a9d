"""Each adapter on small fixture tables in the real column layout, and start-up errors naming file and field."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bcvlm_model.data.adapters import build_manifest
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_testing.mg_fixtures import breast_pixels, write_mg

PIXELS = breast_pixels(32, 16)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_rsna_adapter(tmp_path):
    _write(
        tmp_path / "train.csv",
        "site_id,patient_id,image_id,laterality,view,age,cancer,biopsy,invasive,BIRADS,implant,density,"
        "machine_id,difficult_negative_case\n"
        "2,10006,462822612,L,CC,61.0,0,0,0,,0,,29,False\n"
        "2,10006,1459541791,L,MLO,61.0,1,1,1,0,0,C,29,False\n"
        "1,10011,220375232,X,CC,55.0,0,0,0,,0,B,21,False\n"  # bad laterality
        "1,10011,999,R,CC,55.0,0,0,0,,0,B,21,False\n",
    )  # image file missing
    for patient, image in (("10006", "462822612"), ("10006", "1459541791"), ("10011", "220375232")):
        write_mg(tmp_path / "train_images" / patient / f"{image}.dcm", PIXELS)
    result = build_manifest(DataSourceConfig(kind="rsna", root=str(tmp_path)))
    m = result.manifest.set_index("image_id")
    assert list(m.index) == ["462822612", "1459541791"]
    assert m.loc["1459541791", "malignancy"] == 1.0 and m.loc["1459541791", "density"] == "C"
    assert pd.isna(m.loc["462822612", "density"]) and m.loc["462822612", "machine_id"] == "29"
    assert m.loc["462822612", "malignancy_label_kind"] == "biopsy-proven" and math.isnan(
        m.loc["462822612", "calcification"]
    )
    assert m.loc["462822612", "path"].endswith("train_images/10006/462822612.dcm")
    reasons = {r["image_id"]: r["reason"] for r in result.rejects.rows}
    assert "unparseable laterality 'X'" in reasons["220375232"] and reasons["999"] == "image file not found"


def test_rsna_missing_column_names_file_and_column(tmp_path):
    _write(tmp_path / "train.csv", "site_id,patient_id,image_id,view\n1,2,3,CC\n")
    (tmp_path / "train_images").mkdir()
    with pytest.raises(DataSourceError, match=r"train\.csv: missing column\(s\) 'laterality'"):
        build_manifest(DataSourceConfig(kind="rsna", root=str(tmp_path)))


def test_vindr_adapter_proxy_label_and_calcification(tmp_path):
    _write(
        tmp_path / "breast-level_annotations.csv",
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split\n"
        "s1,se1,i1,L,CC,3518,2800,BI-RADS 4,DENSITY C,training\n"
        "s1,se1,i2,L,MLO,3518,2800,BI-RADS 2,DENSITY C,training\n"
        "s2,se2,i3,R,CC,3518,2800,BI-RADS 5,DENSITY D,test\n"
        "s2,se2,i4,R,MLO,3518,2800,BI-RADS X,DENSITY D,test\n",
    )
    _write(
        tmp_path / "finding_annotations.csv",
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,"
        "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split\n"
        "s1,se1,i1,L,CC,3518,2800,BI-RADS 4,DENSITY C,\"['Mass', 'Suspicious Calcification']\",BI-RADS 4,1,2,3,4,training\n"
        "s1,se1,i2,L,MLO,3518,2800,BI-RADS 2,DENSITY C,['No Finding'],,,,,,training\n"
        "s2,se2,i3,R,CC,3518,2800,BI-RADS 5,DENSITY D,['Mass'],BI-RADS 5,1,2,3,4,test\n",
    )
    _write(
        tmp_path / "metadata.csv",
        "Series Instance UID,SOP Instance UID,Patient's Age,Manufacturer\nse1,i1,053Y,SIEMENS\nse1,i2,053Y,SIEMENS\n",
    )
    for study, image in (("s1", "i1"), ("s1", "i2"), ("s2", "i3"), ("s2", "i4")):
        write_mg(tmp_path / "images" / study / f"{image}.dicom", PIXELS, PatientID=f"patient-of-{study}")
    result = build_manifest(DataSourceConfig(kind="vindr", root=str(tmp_path), site_id="vn"))
    m = result.manifest.set_index("image_id")
    assert m["malignancy"].to_dict() == {"i1": 1.0, "i2": 0.0, "i3": 1.0}
    assert m["calcification"].to_dict() == {"i1": 1.0, "i2": 0.0, "i3": 0.0}
    assert set(m["malignancy_label_kind"]) == {"proxy: BI-RADS 4-5"}
    assert m.loc["i1", "age"] == 53.0 and m.loc["i1", "manufacturer"] == "SIEMENS" and math.isnan(m.loc["i3", "age"])
    assert m["split"].to_dict() == {"i1": "train", "i2": "train", "i3": "test"}
    assert m.loc["i3", "density"] == "D" and m.loc["i1", "site_id"] == "vn"
    assert [r["image_id"] for r in result.rejects.rows] == ["i4"]
    assert "BI-RADS" in result.rejects.rows[0]["reason"]


def test_generic_csv_adapter_with_column_map(tmp_path):
    _write(
        tmp_path / "site.csv",
        "img,pt,file,side,projection,years,outcome,microcalc,hospital\n"
        "a1,p1,imgs/a1.dcm,left,cc,64,malignant,no,H1\n"
        "a2,p1,imgs/a2.dcm,LEFT,MLO,64,benign,yes,H1\n"
        "a3,p2,imgs/a3.dcm,R,CC,sixty,benign,no,H1\n",
    )
    for name in ("a1", "a2", "a3"):
        write_mg(tmp_path / "imgs" / f"{name}.dcm", PIXELS)
    column_map = {
        "image_id": "img",
        "patient_id": "pt",
        "path": "file",
        "laterality": "side",
        "view": "projection",
        "age": "years",
        "malignancy": "outcome",
        "calcification": "microcalc",
        "site_id": "hospital",
    }
    cfg = DataSourceConfig(
        kind="csv", root=str(tmp_path), csv="site.csv", column_map=column_map, malignancy_label_kind="pathology report"
    )
    result = build_manifest(cfg)
    m = result.manifest.set_index("image_id")
    assert list(m.index) == ["a1", "a2"]
    assert m["malignancy"].tolist() == [1.0, 0.0] and m["calcification"].tolist() == [0.0, 1.0]
    assert m["view"].tolist() == ["CC", "MLO"] and m["site_id"].tolist() == ["H1", "H1"]
    assert m.loc["a1", "malignancy_label_kind"] == "pathology report"
    assert "field 'age'" in result.rejects.rows[0]["reason"]
    with pytest.raises(DataSourceError, match=r"site\.csv: missing column\(s\) 'nope'"):
        build_manifest(
            DataSourceConfig(
                kind="csv", root=str(tmp_path), csv="site.csv", column_map={**column_map, "density": "nope"}
            )
        )
    with pytest.raises(DataSourceError, match="not mapped: path"):
        build_manifest(
            DataSourceConfig(
                kind="csv",
                root=str(tmp_path),
                csv="site.csv",
                column_map={k: v for k, v in column_map.items() if k != "path"},
            )
        )


def test_dicom_folder_tags_and_csv_join(tmp_path):
    write_mg(
        tmp_path / "dcm" / "x1.dcm",
        PIXELS,
        SOPInstanceUID="1.2.3.1",
        PatientID="PX",
        PatientAge="070Y",
        ImageLaterality="R",
        ViewPosition="MLO",
        Manufacturer="GE MEDICAL SYSTEMS",
        BreastImplantPresent="YES",
    )
    write_mg(
        tmp_path / "dcm" / "x2.dcm", PIXELS, SOPInstanceUID="1.2.3.2", PatientID="PX", PatientOrientation=["A", "R"]
    )  # no laterality/view tags: standard PatientOrientation -> L
    write_mg(tmp_path / "dcm" / "x3.dcm", breast_pixels(32, 16, chest_wall="right"), SOPInstanceUID="1.2.3.3")
    _write(tmp_path / "labels.csv", "sop,cancer\n1.2.3.1,1\nx2,0\n")
    cfg = DataSourceConfig(
        kind="dicom_folder",
        root=str(tmp_path / "dcm"),
        csv=str(tmp_path / "labels.csv"),
        join_column="sop",
        column_map={"malignancy": "cancer"},
    )
    m = build_manifest(cfg).manifest.set_index("image_id")
    assert m.loc["1.2.3.1", ["laterality", "view", "age", "implant", "manufacturer", "malignancy"]].tolist() == [
        "R",
        "MLO",
        70.0,
        1.0,
        "GE MEDICAL SYSTEMS",
        1.0,
    ]
    assert m.loc["1.2.3.2", "laterality"] == "L" and m.loc["1.2.3.2", "malignancy"] == 0.0
    assert m.loc["1.2.3.2", "view"] == "UNKNOWN"
    assert m.loc["1.2.3.3", "laterality"] == "R"  # from image content (chest wall on the right)
    assert math.isnan(m.loc["1.2.3.3", "malignancy"])
