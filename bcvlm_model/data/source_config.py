"""DataSourceConfig: where a data set lives and how its tables map to the manifest (one schema for every adapter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from omegaconf import MISSING

from bcvlm_model.config_io import to_enum


class SourceKind(StrEnum):
    """Values of `source.kind` (and `bcvlm prepare --source`): which adapter reads the data set."""

    rsna = "rsna"
    vindr = "vindr"
    cbis = "cbis"
    dicom_folder = "dicom_folder"
    csv = "csv"
    synthetic = "synthetic"


@dataclass
class DataSourceConfig:
    """Describes one data set for `bcvlm prepare` (kind selects the adapter)."""

    kind: SourceKind = MISSING  # see SourceKind
    root: str = MISSING  # data-set folder; relative paths below are resolved against it
    # rsna/synthetic: the table (default train.csv) and image folder (default train_images).
    # dicom_folder: an optional CSV joined on `join_column`; csv: the table.
    csv: Optional[str] = None
    images_dir: Optional[str] = None
    # cbis: case-description CSVs (mass and/or calcification, training and/or test).
    csv_files: list[str] = field(default_factory=list)
    # vindr: the three tables.
    vindr_breast_csv: str = "breast-level_annotations.csv"
    vindr_finding_csv: str = "finding_annotations.csv"
    vindr_metadata_csv: Optional[str] = "metadata.csv"
    # vindr: BI-RADS categories counted as malignant for the proxy label (named as a proxy in the manifest).
    malignancy_proxy_birads: list[int] = field(default_factory=lambda: [4, 5])
    # Site id written for sources without one (vindr, cbis, dicom_folder, csv without a site column).
    site_id: str = "1"
    # csv / dicom_folder join: manifest field -> CSV column.
    column_map: dict[str, str] = field(default_factory=dict)
    # dicom_folder: the CSV column holding the image id (SOPInstanceUID or file name stem) to join on.
    join_column: str = "image_id"
    # csv: values (lower-cased) read as 1 / 0 in label and implant columns.
    positive_values: list[str] = field(
        default_factory=lambda: ["1", "1.0", "true", "yes", "y", "malignant", "positive"]
    )
    negative_values: list[str] = field(
        default_factory=lambda: ["0", "0.0", "false", "no", "n", "benign", "negative", "normal"]
    )
    # csv: how malignancy was established, written to malignancy_label_kind.
    malignancy_label_kind: Optional[str] = None
    # dicom_folder: file suffixes scanned ('' = files without a suffix too).
    dicom_suffixes: list[str] = field(default_factory=lambda: [".dcm", ".dicom", ""])

    def __post_init__(self) -> None:
        if self.kind != MISSING:
            self.kind = to_enum(SourceKind, self.kind, "source.kind")
