"""VinDr-Mammo adapter: breast-level + finding annotations + DICOM metadata CSVs, images/<study_id>/<image_id>.dicom."""

from __future__ import annotations

import ast
import logging
import math
from pathlib import Path

from bcvlm_model.data.adapters.common import (
    AdapterResult,
    RowRejected,
    blank,
    finalize,
    new_row,
    optional_text,
    parse_age,
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

BREAST_REQUIRED = (
    "study_id",
    "series_id",
    "image_id",
    "laterality",
    "view_position",
    "breast_birads",
    "breast_density",
    "split",
)
FINDING_REQUIRED = ("image_id", "finding_categories")
METADATA_ID = "SOP Instance UID"
METADATA_ID_COLUMNS = (METADATA_ID, "SOPInstanceUID", "image_id")
METADATA_COLUMNS: dict[str, tuple[str, ...]] = {
    "age": ("Patient's Age", "PatientAge"),
    "manufacturer": ("Manufacturer",),
    "model": ("Manufacturer's Model Name", "ManufacturerModelName"),
}
"""metadata.csv headers (DICOM attribute names as VinDr writes them, or keywords) per manifest field source."""
LOST_WITHOUT_METADATA = "age, manufacturer and model (machine_id)"
SUSPICIOUS_CALCIFICATION = "Suspicious Calcification"
LOGGER = logging.getLogger(__name__)
SPLITS = {"training": "train", "train": "train", "test": "test", "val": "val", "validation": "val"}


def parse_birads(value: object) -> int:
    """'BI-RADS 4' / '4' -> 4; anything else is a row reject."""
    text = "" if blank(value) else str(value).upper().replace("BI-RADS", "").strip()
    if text not in {"0", "1", "2", "3", "4", "5", "6"}:
        raise RowRejected(f"unparseable BI-RADS '{value}'")
    return int(text)


def parse_categories(value: object) -> list[str]:
    """A finding_categories list literal such as "['Mass', 'Suspicious Calcification']"."""
    if blank(value):
        return []
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError) as exc:
        raise RowRejected(f"unparseable finding_categories '{value}'") from exc
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, (list, tuple)):
        raise RowRejected(f"finding_categories is not a list: '{value}'")
    return [str(item).strip() for item in parsed]


def _first_column(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def read_vindr_metadata(cfg: DataSourceConfig, root: Path) -> dict[str, dict[str, str | None]]:
    """image_id -> {age, manufacturer, model} from metadata.csv; says once (a warning) what is lost without it."""
    if not cfg.vindr_metadata_csv:
        LOGGER.warning("vindr: vindr_metadata_csv is not set: %s stay empty for every image", LOST_WITHOUT_METADATA)
        return {}
    meta_path = resolve_path(root, cfg.vindr_metadata_csv)
    if not meta_path.is_file():
        LOGGER.warning("vindr: %s not found: %s stay empty for every image", meta_path, LOST_WITHOUT_METADATA)
        return {}
    table = read_table(meta_path, (), "vindr_metadata_csv")
    columns = list(table.columns)
    id_column = _first_column(columns, METADATA_ID_COLUMNS)
    if id_column is None:
        raise DataSourceError(f"{meta_path}: missing column '{METADATA_ID}' (found: {', '.join(columns)})")
    found = {field: _first_column(columns, names) for field, names in METADATA_COLUMNS.items()}
    absent = [f"{field} ('{METADATA_COLUMNS[field][0]}')" for field, column in found.items() if column is None]
    if absent:
        LOGGER.warning("vindr: %s has no column for %s: those stay empty", meta_path.name, ", ".join(absent))
    return {
        str(r[id_column]).strip(): {field: (r[column] if column else None) for field, column in found.items()}
        for r in table.to_dict("records")
    }


def build_vindr_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """Manifest of VinDr-Mammo: calcification from findings, malignancy only as a BI-RADS proxy named as such.

    patient_id is the image's DICOM PatientID when it has one, else the study id (one study per patient assumed,
    said once as a warning). machine_id is the scanner model from metadata.csv ("Manufacturer's Model Name").
    """
    root = require_folder(Path(cfg.root), "root")
    breast_path = resolve_path(root, cfg.vindr_breast_csv)
    breast = read_table(breast_path, BREAST_REQUIRED, "vindr_breast_csv")
    findings = read_table(resolve_path(root, cfg.vindr_finding_csv), FINDING_REQUIRED, "vindr_finding_csv")
    images = require_folder(resolve_path(root, cfg.images_dir or "images"), "images_dir")
    rejects = RejectLog()
    calcified: dict[str, bool] = {}
    unusable: dict[str, str] = {}  # image_id -> reason of its first unparseable finding row
    for number, record in enumerate(findings.to_dict("records"), start=2):
        image_id = str(record["image_id"]).strip()
        try:
            has_calc = SUSPICIOUS_CALCIFICATION in parse_categories(record["finding_categories"])
        except RowRejected as exc:  # the image's calcification label would be unknown: the image is rejected
            unusable.setdefault(image_id, f"{cfg.vindr_finding_csv} line {number}: {exc}")
            continue
        calcified[image_id] = calcified.get(image_id, False) or has_calc
    metadata = read_vindr_metadata(cfg, root)
    proxy = sorted(set(cfg.malignancy_proxy_birads))
    label_kind = f"proxy: BI-RADS {'-'.join(str(b) for b in (proxy[0], proxy[-1]))}" if proxy else None
    rows = []
    no_metadata_row, study_as_patient = 0, 0
    for number, record in enumerate(breast.to_dict("records"), start=2):
        image_id, study_id = optional_text(record["image_id"]), optional_text(record["study_id"])
        if image_id is None or study_id is None:
            rejects.add(image_id, "", "table", f"{breast_path.name} line {number}: missing image_id or study_id")
            continue
        path = images / study_id / f"{image_id}.dicom"
        if image_id in unusable:
            rejects.add(image_id, str(path), "table", unusable.pop(image_id))
            continue
        try:
            birads = parse_birads(record["breast_birads"])
            if metadata and image_id not in metadata:
                no_metadata_row += 1
            meta = metadata.get(image_id, {})
            split = SPLITS.get(str(record["split"]).strip().lower())
            patient_id = dicom_patient_id(path)
            if patient_id is None:
                study_as_patient += 1
                patient_id = study_id
            rows.append(
                new_row(
                    source="vindr",
                    site_id=cfg.site_id,
                    patient_id=patient_id,
                    study_id=study_id,
                    image_id=image_id,
                    path=str(path),
                    laterality=parse_laterality(record["laterality"]),
                    view=parse_view(record["view_position"]),
                    age=parse_age(meta.get("age")),
                    density=parse_density(record["breast_density"]),
                    manufacturer=optional_text(meta.get("manufacturer")),
                    machine_id=optional_text(meta.get("model")),
                    malignancy=float(birads in proxy) if proxy else math.nan,
                    malignancy_label_kind=label_kind,
                    calcification=float(calcified.get(image_id, False)),
                    split=split,
                )
            )
        except RowRejected as exc:
            rejects.add(image_id, str(path), "table", f"{breast_path.name} line {number}: {exc}")
    for image_id, reason in unusable.items():  # findings of images the breast-level table does not list
        rejects.add(image_id, "", "table", reason)
    if no_metadata_row:
        LOGGER.warning(
            "vindr: %d image(s) have no row in %s: their %s stay empty",
            no_metadata_row,
            cfg.vindr_metadata_csv,
            LOST_WITHOUT_METADATA,
        )
    if study_as_patient:
        LOGGER.warning(
            "vindr: %d image(s) have no readable DICOM PatientID: their patient_id is the study_id (a "
            "patient with two studies counts as two patients)",
            study_as_patient,
        )
    return finalize(rows, rejects)
