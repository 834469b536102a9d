"""Writes a PredictionResult as JSON (sections per level) or CSV (one `level` column, skipped files in a side CSV)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from bcvlm_model.atomic_io import atomic_write_json, atomic_write_text
from bcvlm_model.inference.results import LEVELS, PredictionResult

OUTPUT_FORMATS: tuple[str, ...] = (".csv", ".json")


def output_format(path: str | os.PathLike[str]) -> str:
    """ ".csv" or ".json" from the output file's extension; ValueError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"output file '{path}' must end in .csv or .json (got '{suffix or 'no extension'}')")
    return suffix


def skipped_csv_path(out_path: str | os.PathLike[str]) -> Path:
    """Where the CSV writer lists skipped files: `<out stem>.skipped.csv` next to the output."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}.skipped.csv")


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{key: _json_value(value) for key, value in row.items()} for row in table.to_dict(orient="records")]


def _skipped_table(result: PredictionResult) -> pd.DataFrame:
    return pd.DataFrame([vars(item) for item in result.skipped], columns=["path", "reason", "image_id"])


def result_as_dict(result: PredictionResult) -> dict[str, Any]:
    """JSON-ready form: {"run": ..., "images": [...], "breasts": [...], "exams": [...], "skipped": [...]}."""
    return {
        "run": result.run_info,
        "images": _records(result.images),
        "breasts": _records(result.breasts),
        "exams": _records(result.exams),
        "skipped": _records(_skipped_table(result)),
    }


def result_as_long_table(result: PredictionResult) -> pd.DataFrame:
    """All levels stacked in one table with a leading `level` column (image, breast, exam)."""
    parts = []
    integer_columns: set[str] = set()
    for level in LEVELS:
        table = result.table(level).copy()
        integer_columns.update(c for c in table.columns if pd.api.types.is_integer_dtype(table[c]))
        table.insert(0, "level", level)
        parts.append(table)
    stacked = pd.concat([part for part in parts if len(part)] or parts, ignore_index=True, sort=False)
    for column in integer_columns:
        stacked[column] = stacked[column].astype("Int64")  # stays "2", not "2.0", where other levels leave it empty
    return stacked


def _csv_text(table: pd.DataFrame) -> str:
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue()


def write_predictions(result: PredictionResult, out_path: str | os.PathLike[str]) -> list[Path]:
    """Write `result` to `out_path` (format from its extension), atomically; return the files written.

    CSV output also writes `<stem>.skipped.csv` (header only when nothing was skipped); JSON keeps it in "skipped".
    """
    fmt = output_format(out_path)
    if fmt == ".json":
        return [atomic_write_json(out_path, result_as_dict(result))]
    written = [atomic_write_text(out_path, _csv_text(result_as_long_table(result)))]
    written.append(atomic_write_text(skipped_csv_path(out_path), _csv_text(_skipped_table(result))))
    return written
