"""DICOM file -> model-ready float32 array in [0, 1]: decode, Modality LUT, VOI, MONOCHROME1, orientation, crop, resize."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from bcvlm_model.data.crop import breast_bounding_box, crop_to_box, tissue_kept_fraction
from bcvlm_model.data.dicom_read import check_mammography, is_for_processing, read_dicom
from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.intensity import (
    apply_voi_unit,
    has_voi,
    invert_if_monochrome1,
    modality_values,
    scale_percentiles,
)
from bcvlm_model.data.jpeg2000_decode import decode_for_target
from bcvlm_model.data.orientation import (
    chest_wall_side_from_content,
    chest_wall_side_from_tags,
    orient_chest_wall_left,
)
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.resize import resize_and_pad


@dataclass
class PreprocessTrace:
    """What the pipeline decided for one image (for logs and tests)."""

    chest_wall_side: str
    chest_wall_source: str  # "tags" or "content"
    crop_box: tuple[int, int, int, int]
    voi: str  # "lut_sequence", "window", "percentile", "for_processing_percentile"
    source_shape: tuple[int, int]
    tissue_kept: float  # share of bright tissue inside the crop box (1.0 without crop)
    # JPEG 2000 resolution reduction of the decode: source_shape and crop_box are in pixels of that level
    decode_reduce: int = 0


def to_unit_intensity(pixels: np.ndarray, ds: Dataset, cfg: PreprocessConfig) -> tuple[np.ndarray, str]:
    """Stored pixels -> display intensities in [0, 1] (bright = dense) via Modality LUT, VOI and MONOCHROME1."""
    values = modality_values(pixels, ds)
    if is_for_processing(ds):
        if cfg.for_processing_policy == "reject":
            raise DicomRejected("For-Processing image (for_processing_policy=reject)")
        logged = np.log1p(values - values.min())
        unit = scale_percentiles(logged, 1.0, 99.0)
        return invert_if_monochrome1(unit, ds), "for_processing_percentile"
    if has_voi(ds):
        unit = apply_voi_unit(values, ds, cfg.voi_window_choice, cfg.prefer_voi_lut_sequence)
        kind = "lut_sequence" if (ds.get("VOILUTSequence") and cfg.prefer_voi_lut_sequence) else "window"
    else:
        unit = scale_percentiles(values, cfg.no_voi_low_percentile, cfg.no_voi_high_percentile)
        kind = "percentile"
    return invert_if_monochrome1(unit, ds), kind


def preprocess_dataset(
    ds: Dataset, cfg: PreprocessConfig, path: str | None = None, decode_threads: int = 1
) -> tuple[np.ndarray, PreprocessTrace]:
    """Run every step on a parsed dataset; returns (float32 [H, W] in [0, 1], trace).

    `decode_threads` only changes speed (JPEG 2000 decoder threads), never the output.
    """
    check_mammography(ds, path)
    decoded = decode_for_target(
        ds, cfg.image_height, cfg.image_width, cfg.jpeg2000_reduced_decode, decode_threads, path
    )
    pixels = decoded.pixels
    try:
        unit, voi_kind = to_unit_intensity(pixels, ds, cfg)
    except DicomRejected as exc:
        raise DicomRejected(exc.reason, path) from exc
    side = chest_wall_side_from_tags(ds) if cfg.orientation_from_tags else None
    source = "tags"
    if side is None:
        side, source = chest_wall_side_from_content(unit), "content"
    unit = orient_chest_wall_left(unit, side)
    box = (0, unit.shape[0], 0, unit.shape[1])
    shape = (int(unit.shape[0]), int(unit.shape[1]))
    kept = 1.0
    if cfg.crop:
        box = breast_bounding_box(unit, cfg.crop_threshold, cfg.crop_margin_fraction, cfg.crop_analysis_height)
        kept = tissue_kept_fraction(unit, box, cfg.crop_threshold, cfg.crop_analysis_height)
        unit = crop_to_box(unit, box)
    image = resize_and_pad(unit, cfg.image_height, cfg.image_width, cfg.pad_value, cfg.resize_antialias)
    return image, PreprocessTrace(side, source, box, voi_kind, shape, round(kept, 4), decoded.reduce)


def load_preprocessed_with_trace(
    path: str | os.PathLike[str], cfg: PreprocessConfig, decode_threads: int = 1
) -> tuple[np.ndarray, PreprocessTrace]:
    """load_preprocessed plus the trace of what the pipeline decided (orientation, crop box, VOI kind)."""
    text_path = str(path)
    return preprocess_dataset(read_dicom(text_path), cfg, text_path, decode_threads)


def load_preprocessed(path: str | os.PathLike[str], cfg: PreprocessConfig) -> np.ndarray:
    """Read a DICOM and return the model input: float32 [H, W] in [0, 1], chest wall on the LEFT.

    Raises DicomRejected (with a reason) for unreadable, non-MG, pixel-less or undecodable files.
    """
    text_path = str(path)
    ds = read_dicom(text_path)
    image, _ = preprocess_dataset(ds, cfg, text_path)
    return image
