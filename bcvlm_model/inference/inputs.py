"""Turns `--input` (a folder of DICOM files or a manifest CSV) into manifest rows plus the files skipped with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bcvlm_model.data.adapters.dicom_folder import build_dicom_folder_manifest
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_model.inference.results import SkippedFile


def _resolve_manifest_paths(manifest: pd.DataFrame, manifest_path: Path) -> pd.DataFrame:
    """Relative image paths in a manifest CSV are read relative to the CSV's folder."""
    resolved = manifest.copy()
    base = manifest_path.resolve().parent
    resolved["path"] = [p if Path(p).is_absolute() else str(base / p) for p in resolved["path"].astype(str)]
    return resolved


def collect_images(
    input_path: str | os.PathLike[str], site_id: str = "1", progress: bool = True
) -> tuple[pd.DataFrame, list[SkippedFile]]:
    """Manifest rows for `input_path` and the files already refused (non-DICOM, non-MG, unreadable headers).

    A folder is scanned recursively with the data layer's DICOM-folder adapter (metadata from tags: PatientAge,
    Manufacturer, laterality, view, BreastImplantPresent); a `.csv` file is read as a manifest.
    """
    path = Path(input_path)
    if path.is_dir():
        cfg = DataSourceConfig(kind="dicom_folder", root=str(path), site_id=site_id)
        result = build_dicom_folder_manifest(cfg, progress=progress)
        skipped = [SkippedFile(row["path"], row["reason"], row["image_id"] or None) for row in result.rejects.rows]
        return result.manifest, skipped
    if path.is_file() and path.suffix.lower() == ".csv":
        return _resolve_manifest_paths(read_manifest(path), path), []
    if not path.exists():
        raise FileNotFoundError(f"--input not found: {path}")
    raise ValueError(f"--input must be a folder of DICOM files or a manifest .csv, got '{path}'")
