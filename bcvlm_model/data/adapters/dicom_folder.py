"""Plain DICOM folder adapter: metadata from tags (age, side, view, vendor, implant), optionally joined with a CSV."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from bcvlm_model.data.adapters.common import (
    AdapterResult,
    RowRejected,
    finalize,
    new_row,
    optional_text,
    parse_age,
    read_table,
    require_folder,
    resolve_path,
)
from bcvlm_model.data.adapters.field_parsing import check_column_map, parse_field
from bcvlm_model.data.adapters.patients import patient_id_from_tag
from bcvlm_model.data.dicom_read import check_mammography, decode_pixels, read_dicom, read_dicom_header
from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.folder_scan import SkippedEntry, scan_dicom_folder
from bcvlm_model.data.orientation import laterality_from_content, laterality_from_tags, view_from_tags
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.rejects import RejectLog
from bcvlm_model.data.source_config import DataSourceConfig

IMPLANT_VALUES = {"YES": 1.0, "NO": 0.0}
LOGGER = logging.getLogger(__name__)


def list_candidate_files(root: Path, suffixes: list[str]) -> list[Path]:
    """Files under root whose suffix (lower-cased) is one of `suffixes` ('' = no suffix), sorted; hidden ones skipped;
    symlinked sub-folders followed once (see `folder_scan.scan_dicom_folder`)."""
    return scan_dicom_folder(root, suffixes).files


def report_skipped_entries(skipped: list[SkippedEntry], rejects: RejectLog, root: Path) -> None:
    """Entries that may hide images go to rejects (stage 'scan'); ignored names are counted in one log line."""
    ignored: dict[str, list[str]] = {}
    for entry in skipped:
        if entry.could_be_image:
            rejects.add(Path(entry.path).stem, entry.path, "scan", entry.reason)
        else:
            ignored.setdefault(entry.reason, []).append(entry.path)
    for reason, paths in sorted(ignored.items()):
        LOGGER.warning(
            "%s: skipped %d entr%s (%s), e.g. %s",
            root,
            len(paths),
            "y" if len(paths) == 1 else "ies",
            reason,
            ", ".join(paths[:3]),
        )


def laterality_by_content(path: Path) -> str:
    """Decode the image and guess laterality from where the tissue is (standard display assumed)."""
    from bcvlm_model.data.pipeline import to_unit_intensity

    ds = read_dicom(path)
    unit, _ = to_unit_intensity(
        decode_pixels(ds, str(path)), ds, PreprocessConfig(for_processing_policy="percentile_window")
    )
    return laterality_from_content(unit)


def header_row(path: Path, cfg: DataSourceConfig) -> dict:
    """One manifest row from a file's DICOM tags (raises DicomRejected / RowRejected)."""
    ds = read_dicom_header(path)
    check_mammography(ds, str(path))
    image_id = optional_text(ds.get("SOPInstanceUID")) or path.stem
    patient_id = patient_id_from_tag(optional_text(ds.get("PatientID")), path.parent.name)
    laterality = laterality_from_tags(ds) or laterality_by_content(path)
    implant = IMPLANT_VALUES.get(str(ds.get("BreastImplantPresent", "")).strip().upper(), float("nan"))
    return new_row(
        source="dicom_folder",
        site_id=cfg.site_id,
        patient_id=patient_id,
        study_id=optional_text(ds.get("StudyInstanceUID")) or patient_id,
        image_id=image_id,
        path=str(path),
        laterality=laterality,
        view=view_from_tags(ds) or "UNKNOWN",
        age=parse_age(ds.get("PatientAge")),
        implant=implant,
        manufacturer=optional_text(ds.get("Manufacturer")),
        machine_id=optional_text(ds.get("ManufacturerModelName")),
    )


def build_dicom_folder_manifest(cfg: DataSourceConfig, progress: bool = False) -> AdapterResult:
    """Scan root for DICOM files; non-DICOM, non-MG, pixel-less and duplicate files go to rejects."""
    root = require_folder(Path(cfg.root), "root")
    join = None
    if cfg.csv:
        check_column_map(cfg, ())
        table = read_table(resolve_path(root, cfg.csv), [cfg.join_column, *cfg.column_map.values()], "csv")
        join = {str(r[cfg.join_column]).strip(): r for r in table.to_dict("records")}
    rejects = RejectLog()
    rows = []
    scan = scan_dicom_folder(root, cfg.dicom_suffixes)
    report_skipped_entries(scan.skipped, rejects, root)
    for path in tqdm(scan.files, desc="scan DICOM", disable=not progress):
        try:
            row = header_row(path, cfg)
        except DicomRejected as exc:
            rejects.add(path.stem, str(path), "header", exc.reason)
            continue
        except RowRejected as exc:
            rejects.add(path.stem, str(path), "header", str(exc))
            continue
        if join is not None:
            record = join.get(row["image_id"]) or join.get(path.stem)
            if record is not None:
                try:
                    for field, column in cfg.column_map.items():
                        row[field] = parse_field(field, record[column], cfg)
                except RowRejected as exc:
                    rejects.add(row["image_id"], str(path), "table", f"{cfg.csv}: {exc}")
                    continue
        rows.append(row)
    return finalize(rows, rejects)
