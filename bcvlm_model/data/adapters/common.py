"""Shared adapter pieces: checked CSV reading, value parsers (laterality, view, age, density, 0/1) and row assembly."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bcvlm_model.data.adapters.patients import unify_patient_splits
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.manifest import MANIFEST_COLUMNS, validate
from bcvlm_model.data.rejects import RejectLog


@dataclass
class AdapterResult:
    """A validated manifest and the rows/files the adapter rejected."""

    manifest: pd.DataFrame
    rejects: RejectLog


class RowRejected(ValueError):
    """A table row that cannot be used; the message is the reject reason."""


def resolve_path(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """`path` if absolute, else `root / path`."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(root) / candidate


def require_folder(path: Path, field: str) -> Path:
    """Fail at start (naming the config field) when a folder does not exist."""
    if not path.is_dir():
        raise DataSourceError(f"{field}: folder not found: {path}")
    return path


def read_table(path: Path, required: Iterable[str], field: str) -> pd.DataFrame:
    """Read a CSV with every value as a string; a missing file or column fails at start naming file and column."""
    if not path.is_file():
        raise DataSourceError(f"{field}: file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataSourceError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} (found: {', '.join(table.columns)})"
        )
    return table


def blank(value: Any) -> bool:
    """True for None, NaN and empty/whitespace strings."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def parse_laterality(value: Any) -> str:
    """'L'/'R' from L, R, LEFT, RIGHT (any case); anything else is a row reject."""
    text = "" if blank(value) else str(value).strip().upper()
    mapped = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}.get(text)
    if mapped is None:
        raise RowRejected(f"unparseable laterality '{value}'")
    return mapped


def parse_view(value: Any) -> str:
    """Upper-case view name (CC, MLO, ...); empty is a row reject."""
    if blank(value):
        raise RowRejected("missing view")
    text = re.sub(r"\s+", "", str(value).strip().upper())
    return text


def parse_age(value: Any) -> float:
    """Age in years from '63', '63.0' or a DICOM Age String ('063Y', '006M'); empty -> NaN; else row reject."""
    if blank(value):
        return math.nan
    text = str(value).strip().upper()
    match = re.fullmatch(r"(\d{1,3})([DWMY])", text)
    if match:
        number, unit = int(match.group(1)), match.group(2)
        return float(number) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]
    try:
        age = float(text)
    except ValueError as exc:
        raise RowRejected(f"unparseable age '{value}'") from exc
    if not 0 <= age <= 120:
        raise RowRejected(f"implausible age '{value}'")
    return age


def parse_density(value: Any) -> str | None:
    """'A'..'D' from A-D, 'DENSITY C', 1-4; empty -> None; else row reject."""
    if blank(value):
        return None
    text = str(value).strip().upper().replace("DENSITY", "").strip()
    if text in {"A", "B", "C", "D"}:
        return text
    if text in {"1", "2", "3", "4", "1.0", "2.0", "3.0", "4.0"}:
        return "ABCD"[int(float(text)) - 1]
    raise RowRejected(f"unparseable density '{value}'")


def parse_binary(
    value: Any,
    positive: Iterable[str] = ("1", "1.0", "true", "yes"),
    negative: Iterable[str] = ("0", "0.0", "false", "no"),
) -> float:
    """1.0 / 0.0 from the given spellings (case-insensitive); empty -> NaN; else row reject."""
    if blank(value):
        return math.nan
    text = str(value).strip().lower()
    if text in {p.lower() for p in positive}:
        return 1.0
    if text in {n.lower() for n in negative}:
        return 0.0
    raise RowRejected(f"unparseable 0/1 value '{value}'")


def optional_text(value: Any) -> str | None:
    """Stripped string or None."""
    return None if blank(value) else str(value).strip()


def new_row(**values: Any) -> dict[str, Any]:
    """A manifest row with every column (unset ones empty / NaN)."""
    row: dict[str, Any] = {column: None for column in MANIFEST_COLUMNS}
    for column in ("age", "implant", "malignancy", "calcification", "oracle_malignancy", "oracle_calcification"):
        row[column] = math.nan
    unknown = set(values) - set(MANIFEST_COLUMNS)
    if unknown:
        raise KeyError(f"not manifest columns: {sorted(unknown)}")
    row.update(values)
    return row


def finalize(rows: list[dict[str, Any]], rejects: RejectLog, check_files: bool = True) -> AdapterResult:
    """Drop rows whose image file is missing or whose image_id repeats (both -> rejects), give each patient one
    split (`patients.unify_patient_splits`), validate the rest."""
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        image_id = str(row["image_id"])
        if image_id in seen:
            rejects.add(image_id, row["path"], "table", "duplicate image_id")
            continue
        if check_files and not Path(row["path"]).is_file():
            rejects.add(image_id, row["path"], "table", "image file not found")
            continue
        seen.add(image_id)
        kept.append(row)
    if kept:
        unify_patient_splits(kept, str(kept[0]["source"]))
    frame = pd.DataFrame(kept, columns=list(MANIFEST_COLUMNS))
    return AdapterResult(validate(frame), rejects)
