"""CBIS-DDSM adapter: mass/calcification case-description CSVs (one row per abnormality) -> one row per image."""

from __future__ import annotations

import math
import re
from pathlib import Path

from bcvlm_model.data.adapters.common import (
    AdapterResult,
    RowRejected,
    blank,
    finalize,
    new_row,
    parse_density,
    parse_laterality,
    parse_view,
    read_table,
    require_folder,
    resolve_path,
)
from bcvlm_model.data.adapters.patients import dicom_patient_id
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.rejects import RejectLog
from bcvlm_model.data.source_config import DataSourceConfig

COMMON_REQUIRED = (
    "patient_id",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
)
DENSITY_COLUMNS = ("breast density", "breast_density")  # calc CSVs / mass CSVs
PATHOLOGIES = {"MALIGNANT": 1.0, "BENIGN": 0.0, "BENIGN_WITHOUT_CALLBACK": 0.0}


def locate_image(root: Path, image_file_path: str) -> Path | None:
    """The full-mammogram DICOM of a CSV 'image file path': as written, else the one .dcm under its top folder.

    TCIA downloads rename the inner folders, so the CSV's inner path often does not exist; its first
    component (e.g. 'Calc-Training_P_00005_RIGHT_CC') still names the folder holding the image.
    """
    relative = image_file_path.strip().replace("\\", "/")
    exact = root / relative
    if exact.is_file():
        return exact
    top = relative.split("/")[0]
    folder = root / top
    if folder.is_dir():
        found = sorted(folder.rglob("*.dcm"))
        if found:
            return found[0]
    return None


def split_from(text: str) -> str | None:
    """'train' / 'test' from a CBIS name containing 'Training' or 'Test'."""
    if re.search(r"train", text, re.IGNORECASE):
        return "train"
    if re.search(r"test", text, re.IGNORECASE):
        return "test"
    return None


def _image_identity(record: dict) -> tuple[str, str, str]:
    """('P_00005_RIGHT_CC', 'R', 'CC') from a row's patient, side and view (raises RowRejected)."""
    patient = str(record["patient_id"]).strip()
    if not patient:
        raise RowRejected("missing patient_id")
    laterality, view = parse_laterality(record["left or right breast"]), parse_view(record["image view"])
    return f"{patient}_{'LEFT' if laterality == 'L' else 'RIGHT'}_{view}", laterality, view


def build_cbis_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """Merge all abnormalities of an image: malignancy = any MALIGNANT pathology (biopsy-proven); calcification =
    any calcification abnormality (NaN when no calcification CSV was given).

    The patient id is the image's DICOM PatientID when it has one (CBIS 'Mass-Test_P_00005_RIGHT_CC' -> 'P_00005'),
    else the CSV's. An image with any unusable abnormality row is rejected whole (its labels would be incomplete).
    The split comes from the table or folder name (Training/Test); a patient in both keeps all images in test.
    """
    root = require_folder(Path(cfg.root), "root")
    if not cfg.csv_files:
        raise DataSourceError("csv_files: CBIS-DDSM needs at least one case-description CSV")
    rejects = RejectLog()
    images: dict[str, dict] = {}
    unusable: dict[str, tuple[str, str]] = {}  # image_id -> (path, reason of its first bad row)
    calc_tables = 0
    for name in cfg.csv_files:
        table_path = resolve_path(root, name)
        table = read_table(table_path, COMMON_REQUIRED, "csv_files")
        density_column = next((c for c in DENSITY_COLUMNS if c in table.columns), None)
        if density_column is None:
            raise DataSourceError(f"{table_path}: missing column 'breast density' (calc) or 'breast_density' (mass)")
        calc_tables += int("calc type" in table.columns)
        for number, record in enumerate(table.to_dict("records"), start=2):
            where = f"{table_path.name} line {number}"
            try:
                image_id, laterality, view = _image_identity(record)
            except RowRejected as exc:
                rejects.add(record.get("patient_id"), record.get("image file path"), "table", f"{where}: {exc}")
                continue
            try:
                pathology = str(record["pathology"]).strip().upper()
                if pathology not in PATHOLOGIES:
                    raise RowRejected(f"unknown pathology '{record['pathology']}'")
                kind = str(record["abnormality type"]).strip().lower()
                if kind not in {"mass", "calcification"}:
                    raise RowRejected(f"unknown abnormality type '{record['abnormality type']}'")
                density = parse_density(record[density_column])
            except RowRejected as exc:
                unusable.setdefault(image_id, (str(record.get("image file path") or ""), f"{where}: {exc}"))
                continue
            entry = images.get(image_id)
            if entry is None:
                path = locate_image(root, record["image file path"]) if not blank(record["image file path"]) else None
                csv_patient = str(record["patient_id"]).strip()
                patient = (dicom_patient_id(path) if path else None) or csv_patient
                entry = images[image_id] = {
                    "row": new_row(
                        source="cbis",
                        site_id=cfg.site_id,
                        patient_id=patient,
                        study_id=patient,
                        image_id=image_id,
                        path=str(path or root / str(record["image file path"])),
                        laterality=laterality,
                        view=view,
                        density=density,
                        malignancy=0.0,
                        malignancy_label_kind="biopsy-proven",
                        split=split_from(str(record["image file path"])) or split_from(table_path.name),
                    ),
                    "calc": False,
                }
            row = entry["row"]
            row["malignancy"] = max(row["malignancy"], PATHOLOGIES[pathology])
            entry["calc"] = entry["calc"] or kind == "calcification"
            if row["split"] != "test":  # the same image listed in a Test table is test data
                row["split"] = split_from(str(record["image file path"])) or split_from(table_path.name) or row["split"]
    rows = []
    for image_id, entry in images.items():
        if image_id in unusable:
            continue
        entry["row"]["calcification"] = float(entry["calc"]) if calc_tables else (1.0 if entry["calc"] else math.nan)
        rows.append(entry["row"])
    for image_id, (path, reason) in unusable.items():
        shown = images[image_id]["row"]["path"] if image_id in images else path
        rejects.add(
            image_id,
            shown,
            "table",
            f"{reason} (the whole image is left out: its labels would be incomplete or unknown)",
        )
    return finalize(rows, rejects)
