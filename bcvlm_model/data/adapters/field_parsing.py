"""Parse a table value into the typed manifest field it is mapped to (used by the CSV and DICOM-folder joins)."""

from __future__ import annotations

from typing import Any

from bcvlm_model.data.adapters.common import (
    RowRejected,
    optional_text,
    parse_age,
    parse_binary,
    parse_density,
    parse_laterality,
    parse_view,
)
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.manifest import MANIFEST_COLUMNS
from bcvlm_model.data.source_config import DataSourceConfig

NOT_MAPPABLE = ("source", "path_resolved")


def check_column_map(cfg: DataSourceConfig, required: tuple[str, ...]) -> None:
    """Fail at start when column_map names unknown manifest fields or lacks required ones."""
    unknown = [f for f in cfg.column_map if f not in MANIFEST_COLUMNS or f in NOT_MAPPABLE]
    if unknown:
        raise DataSourceError(f"column_map: unknown manifest field(s) {', '.join(unknown)}")
    missing = [f for f in required if f not in cfg.column_map]
    if missing:
        raise DataSourceError(f"column_map: required manifest field(s) not mapped: {', '.join(missing)}")


def parse_field(field: str, value: Any, cfg: DataSourceConfig) -> Any:
    """Typed value for manifest `field`; bad values raise RowRejected naming the field."""
    try:
        if field == "laterality":
            return parse_laterality(value)
        if field == "view":
            return parse_view(value)
        if field == "age":
            return parse_age(value)
        if field == "density":
            return parse_density(value)
        if field in {"implant", "malignancy", "calcification"}:
            return parse_binary(value, cfg.positive_values, cfg.negative_values)
        if field in {"oracle_malignancy", "oracle_calcification"}:
            text = optional_text(value)
            return float(text) if text is not None else float("nan")
        return optional_text(value)
    except (RowRejected, ValueError) as exc:
        raise RowRejected(f"field '{field}': {exc}") from exc
