"""Adapters that turn a data set's own tables and folders into the manifest (plus rejected rows)."""

from __future__ import annotations

from typing import Callable

from bcvlm_model.data.adapters.common import AdapterResult
from bcvlm_model.data.source_config import DataSourceConfig, SourceKind


def build_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """Run the adapter named by cfg.kind."""
    from bcvlm_model.data.adapters import cbis, dicom_folder, generic_csv, rsna, vindr

    adapters: dict[SourceKind, Callable[[DataSourceConfig], AdapterResult]] = {
        SourceKind.rsna: rsna.build_rsna_manifest,
        SourceKind.synthetic: rsna.build_synthetic_manifest,
        SourceKind.vindr: vindr.build_vindr_manifest,
        SourceKind.cbis: cbis.build_cbis_manifest,
        SourceKind.dicom_folder: dicom_folder.build_dicom_folder_manifest,
        SourceKind.csv: generic_csv.build_csv_manifest,
    }
    return adapters[cfg.kind](cfg)


__all__ = ["AdapterResult", "build_manifest"]
