"""The manifest: one row per image (ids, DICOM path, laterality, view, metadata, labels); read, write, validate."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bcvlm_model.atomic_io import atomic_write_text
from bcvlm_model.data.errors import DataSourceError

MANIFEST_COLUMNS: tuple[str, ...] = (
    "source",
    "site_id",
    "patient_id",
    "study_id",
    "image_id",
    "path",
    "laterality",
    "view",
    "age",
    "density",
    "implant",
    "manufacturer",
    "machine_id",
    "malignancy",
    "calcification",
    "malignancy_label_kind",
    "split",
    "oracle_malignancy",
    "oracle_calcification",
)
"""Column order of every manifest (meanings in docs/data.md)."""

STRING_COLUMNS = ("source", "site_id", "patient_id", "study_id", "image_id", "path", "laterality", "view")
OPTIONAL_STRING_COLUMNS = ("density", "manufacturer", "machine_id", "malignancy_label_kind", "split")
FLOAT_COLUMNS = ("age", "implant", "malignancy", "calcification", "oracle_malignancy", "oracle_calcification")
BINARY_COLUMNS = ("implant", "malignancy", "calcification")

METADATA_TEXT_FIELDS: tuple[str, ...] = (
    "age",
    "density",
    "implant",
    "manufacturer",
    "machine_id",
    "view",
    "laterality",
    "site_id",
)
"""Manifest fields that may be rendered into the report text. Label columns are never among them."""

LABEL_COLUMNS: tuple[str, ...] = ("malignancy", "calcification")

SOURCES = ("rsna", "vindr", "cbis", "dicom_folder", "csv", "synthetic")
DENSITIES = ("A", "B", "C", "D")
SPLITS = ("train", "val", "test")


class ManifestError(DataSourceError):
    """A manifest violates the schema; the message names the column and an offending row."""


def empty_manifest() -> pd.DataFrame:
    """A manifest with no rows and all columns."""
    return validate(pd.DataFrame({c: [] for c in MANIFEST_COLUMNS}))


def _optional_str(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text if text else None


def _fail(column: str, df: pd.DataFrame, mask: pd.Series, what: str, origin: str) -> None:
    bad = df.loc[mask]
    first = bad.iloc[0]
    ident = first.get("image_id", bad.index[0])
    raise ManifestError(
        f"{origin}manifest column '{column}': {len(bad)} row(s) {what}; first: image_id={ident!r} "
        f"value={first[column]!r}"
    )


def validate(df: pd.DataFrame, origin: str = "") -> pd.DataFrame:
    """Check and normalise a manifest: all columns present, types coerced, values in their domains, ids unique.

    Returns a new DataFrame with columns in MANIFEST_COLUMNS order; raises ManifestError naming the problem.
    """
    prefix = f"{origin}: " if origin else ""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{prefix}manifest is missing column(s): {', '.join(missing)}")
    out = df.loc[:, list(MANIFEST_COLUMNS)].copy().reset_index(drop=True)
    for column in STRING_COLUMNS:
        values = out[column].map(_optional_str)
        if values.isna().any():
            _fail(column, out.assign(**{column: out[column]}), values.isna(), "are empty", prefix)
        out[column] = values.astype(object)
    for column in OPTIONAL_STRING_COLUMNS:
        out[column] = out[column].map(_optional_str).astype(object)
    for column in FLOAT_COLUMNS:
        numeric = pd.to_numeric(out[column], errors="coerce")
        unparsable = numeric.isna() & out[column].map(_optional_str).notna()
        if unparsable.any():
            _fail(column, out, unparsable, "are not numbers", prefix)
        out[column] = numeric.astype("float64")
    for column in BINARY_COLUMNS:
        bad = out[column].notna() & ~out[column].isin([0.0, 1.0])
        if bad.any():
            _fail(column, out, bad, "are not 0/1/empty", prefix)
    checks = {
        "laterality": out["laterality"].isin(["L", "R"]),
        "view": out["view"].map(lambda v: isinstance(v, str) and v == v.upper()),
        "density": out["density"].isna() | out["density"].isin(DENSITIES),
        "split": out["split"].isna() | out["split"].isin(SPLITS),
        "source": out["source"].isin(SOURCES),
    }
    for column, ok in checks.items():
        if not ok.all():
            _fail(column, out, ~ok, "have values outside the schema", prefix)
    duplicated = out["image_id"].duplicated(keep=False)
    if duplicated.any():
        _fail("image_id", out, duplicated, "are duplicated", prefix)
    return out


def write_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write a manifest CSV atomically."""
    checked = validate(df)
    buffer = io.StringIO()
    checked.to_csv(buffer, index=False)
    return atomic_write_text(path, buffer.getvalue())


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a manifest CSV (ids stay strings); a relative image `path` is relative to the manifest's
    folder, never to the reader's working folder."""
    source = Path(path)
    if not source.is_file():
        raise ManifestError(f"manifest file not found: {source}")
    string_like = {c: str for c in STRING_COLUMNS + OPTIONAL_STRING_COLUMNS}
    try:
        df = pd.read_csv(source, dtype=string_like, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ManifestError(f"{source}: not a readable CSV: {exc}") from exc
    table = validate(df, origin=str(source))
    folder = os.path.dirname(os.path.abspath(source))  # abspath, not resolve: symlinked trees keep their names
    table["path"] = [value if os.path.isabs(value) else os.path.join(folder, value) for value in table["path"]]
    return table
