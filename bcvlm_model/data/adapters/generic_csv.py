"""Generic CSV adapter: any table whose columns are mapped onto manifest fields by `column_map` in the config."""

from __future__ import annotations

import math
from pathlib import Path

from bcvlm_model.data.adapters.common import (
    AdapterResult,
    RowRejected,
    finalize,
    new_row,
    read_table,
    require_folder,
    resolve_path,
)
from bcvlm_model.data.adapters.field_parsing import check_column_map, parse_field
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.rejects import RejectLog
from bcvlm_model.data.source_config import DataSourceConfig

REQUIRED_FIELDS = ("image_id", "patient_id", "path", "laterality", "view")


def build_csv_manifest(cfg: DataSourceConfig) -> AdapterResult:
    """One manifest row per CSV row; `path` is relative to root unless absolute; study_id defaults to patient_id."""
    root = require_folder(Path(cfg.root), "root")
    if not cfg.csv:
        raise DataSourceError("csv: the generic CSV adapter needs a table")
    check_column_map(cfg, REQUIRED_FIELDS)
    table_path = resolve_path(root, cfg.csv)
    table = read_table(table_path, cfg.column_map.values(), "csv")
    rejects = RejectLog()
    rows = []
    for number, record in enumerate(table.to_dict("records"), start=2):
        values = {}
        try:
            for field, column in cfg.column_map.items():
                values[field] = parse_field(field, record[column], cfg)
            for field in ("image_id", "patient_id", "path"):
                if values[field] is None:
                    raise RowRejected(f"field '{field}' is empty")
        except RowRejected as exc:
            rejects.add(
                record.get(cfg.column_map["image_id"]),
                record.get(cfg.column_map["path"]),
                "table",
                f"{table_path.name} line {number}: {exc}",
            )
            continue
        values["path"] = str(resolve_path(root, values["path"]))
        values.setdefault("study_id", values["patient_id"])
        values["study_id"] = values["study_id"] or values["patient_id"]
        values["site_id"] = values.get("site_id") or cfg.site_id
        if not math.isnan(values.get("malignancy", math.nan)) and not values.get("malignancy_label_kind"):
            values["malignancy_label_kind"] = cfg.malignancy_label_kind
        rows.append(new_row(source="csv", **values))
    return finalize(rows, rejects)
