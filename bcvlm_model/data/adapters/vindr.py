"""VinDr-Mammo adapter: breast-level + finding annotations + DICOM metadata CSVs, images/<study_id>/<image_id>.dicom."""
from __future__ import annotations

import ast
import math
from pathlib import Path

from bcvlm_model.data.adapters.common import (
    AdapterResult, RowRejected, blank, finalize, new_row, optional_text, parse_age, parse_density,
    parse_laterality, parse_view, read_table, require_folder, resolve_path,
)
from bcvlm_model.data.rejects import RejectLog
from bcvlm_model.data.source_config import DataSourceConfig

BREAST_REQUIRED = ("study_id", "series_id", "image_id", "laterality", "view_position", "breast_birads",
                   "breast_density", "split")
FINDING_REQUIRED = ("image_id", "finding_categories")
METADATA_ID = "SOP Instance UID"
METADATA_AGE = "Patient's Age"
METADATA_MANUFACTURER = "Manufacturer"
SUSPICIOUS_CALCIFICATION = "Suspicious Calcification"
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


def build_vindr_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """Manifest of VinDr-Mammo: calcification from findings, malignancy only as a BI-RADS proxy named as such."""
    root = require_folder(Path(cfg.root), "root")
    breast_path = resolve_path(root, cfg.vindr_breast_csv)
    breast = read_table(breast_path, BREAST_REQUIRED, "vindr_breast_csv")
    findings = read_table(resolve_path(root, cfg.vindr_finding_csv), FINDING_REQUIRED, "vindr_finding_csv")
    images = require_folder(resolve_path(root, cfg.images_dir or "images"), "images_dir")
    rejects = RejectLog()
    calcified: dict[str, bool] = {}
    for number, record in enumerate(findings.to_dict("records"), start=2):
        try:
            has_calc = SUSPICIOUS_CALCIFICATION in parse_categories(record["finding_categories"])
        except RowRejected as exc:
            rejects.add(record["image_id"], "", "table", f"{cfg.vindr_finding_csv} line {number}: {exc}")
            calcified.setdefault(record["image_id"], False)
            continue
        calcified[record["image_id"]] = calcified.get(record["image_id"], False) or has_calc
    metadata: dict[str, dict] = {}
    if cfg.vindr_metadata_csv:
        meta_path = resolve_path(root, cfg.vindr_metadata_csv)
        if meta_path.is_file():
            table = read_table(meta_path, (METADATA_ID,), "vindr_metadata_csv")
            metadata = {r[METADATA_ID]: r for r in table.to_dict("records")}
    proxy = sorted(set(cfg.malignancy_proxy_birads))
    label_kind = f"proxy: BI-RADS {'-'.join(str(b) for b in (proxy[0], proxy[-1]))}" if proxy else None
    rows = []
    for number, record in enumerate(breast.to_dict("records"), start=2):
        image_id, study_id = optional_text(record["image_id"]), optional_text(record["study_id"])
        if image_id is None or study_id is None:
            rejects.add(image_id, "", "table", f"{breast_path.name} line {number}: missing image_id or study_id")
            continue
        path = images / study_id / f"{image_id}.dicom"
        try:
            birads = parse_birads(record["breast_birads"])
            meta = metadata.get(image_id, {})
            split = SPLITS.get(str(record["split"]).strip().lower())
            rows.append(new_row(
                source="vindr", site_id=cfg.site_id, patient_id=study_id, study_id=study_id, image_id=image_id,
                path=str(path), laterality=parse_laterality(record["laterality"]),
                view=parse_view(record["view_position"]), age=parse_age(meta.get(METADATA_AGE)),
                density=parse_density(record["breast_density"]),
                manufacturer=optional_text(meta.get(METADATA_MANUFACTURER)),
                malignancy=float(birads in proxy) if proxy else math.nan, malignancy_label_kind=label_kind,
                calcification=float(calcified.get(image_id, False)), split=split,
            ))
        except RowRejected as exc:
            rejects.add(image_id, str(path), "table", f"{breast_path.name} line {number}: {exc}")
    return finalize(rows, rejects)
