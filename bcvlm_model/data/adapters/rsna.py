"""RSNA Screening Mammography adapter (train.csv + train_images/<patient_id>/<image_id>.dcm) and the synthetic cohort."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bcvlm_model.data.adapters.common import (
    AdapterResult,
    RowRejected,
    finalize,
    new_row,
    optional_text,
    parse_age,
    parse_binary,
    parse_density,
    parse_laterality,
    parse_view,
    read_table,
    require_folder,
    resolve_path,
)
from bcvlm_model.data.rejects import RejectLog
from bcvlm_model.data.source_config import DataSourceConfig

RSNA_REQUIRED = ("site_id", "patient_id", "image_id", "laterality", "view")
RSNA_OPTIONAL = (
    "age",
    "cancer",
    "biopsy",
    "invasive",
    "BIRADS",
    "implant",
    "density",
    "machine_id",
    "difficult_negative_case",
)
RSNA_COLUMNS = RSNA_REQUIRED + RSNA_OPTIONAL
"""The RSNA train.csv schema in its column order (`bcvlm synth` writes exactly these)."""
ORACLE_REQUIRED = ("image_id", "calcification", "oracle_malignancy", "oracle_calcification")


def _rsna_rows(cfg: DataSourceConfig, source: str, label_kind: str) -> tuple[list[dict], RejectLog, pd.DataFrame]:
    root = require_folder(Path(cfg.root), "root")
    table_path = resolve_path(root, cfg.csv or "train.csv")
    table = read_table(table_path, RSNA_REQUIRED, "csv")
    images = require_folder(resolve_path(root, cfg.images_dir or "train_images"), "images_dir")
    rejects = RejectLog()
    rows = []
    for number, record in enumerate(table.to_dict("records"), start=2):
        image_id = optional_text(record["image_id"])
        patient_id = optional_text(record["patient_id"])
        if image_id is None or patient_id is None:
            rejects.add(image_id, "", "table", f"{table_path.name} line {number}: missing image_id or patient_id")
            continue
        path = images / patient_id / f"{image_id}.dcm"
        try:
            cancer = parse_binary(record.get("cancer"))
            rows.append(
                new_row(
                    source=source,
                    site_id=optional_text(record["site_id"]) or cfg.site_id,
                    patient_id=patient_id,
                    study_id=patient_id,
                    image_id=image_id,
                    path=str(path),
                    laterality=parse_laterality(record["laterality"]),
                    view=parse_view(record["view"]),
                    age=parse_age(record.get("age")),
                    density=parse_density(record.get("density")),
                    implant=parse_binary(record.get("implant")),
                    machine_id=optional_text(record.get("machine_id")),
                    malignancy=cancer,
                    malignancy_label_kind=None if math.isnan(cancer) else label_kind,
                )
            )
        except RowRejected as exc:
            rejects.add(image_id, str(path), "table", f"{table_path.name} line {number}: {exc}")
    return rows, rejects, table


def build_rsna_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """Manifest of an RSNA-layout data set; `cancer` (biopsy-proven) becomes malignancy, calcification is unknown."""
    rows, rejects, _ = _rsna_rows(cfg, "rsna", "biopsy-proven")
    return finalize(rows, rejects)


def build_synthetic_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """Manifest of a `bcvlm synth` folder: the RSNA table joined with oracle.csv (calcification, oracle scores)."""
    rows, rejects, _ = _rsna_rows(cfg, "synthetic", "synthetic ground truth")
    oracle_path = resolve_path(cfg.root, "oracle.csv")
    oracle = read_table(oracle_path, ORACLE_REQUIRED, "oracle.csv").set_index("image_id")
    for row in rows:
        if row["image_id"] in oracle.index:
            extra = oracle.loc[row["image_id"]]
            row["calcification"] = parse_binary(extra["calcification"])
            row["oracle_malignancy"] = float(extra["oracle_malignancy"])
            row["oracle_calcification"] = float(extra["oracle_calcification"])
            if "manufacturer" in extra.index:
                row["manufacturer"] = optional_text(extra["manufacturer"])
    return finalize(rows, rejects)
