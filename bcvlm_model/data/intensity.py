"""Intensity steps: Modality LUT, deterministic VOI choice, VOI LUT / windowing to [0, 1], MONOCHROME1 inversion."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from bcvlm_model.data.errors import DicomRejected


def modality_values(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality values (Rescale Slope/Intercept or Modality LUT Sequence), float64."""
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)


def window_count(ds: Dataset) -> int:
    """Number of window centre/width pairs in the dataset (0 when none)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return 0
    return min(ds["WindowCenter"].VM, ds["WindowWidth"].VM)


def _as_list(value: object) -> list[float]:
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return [float(v) for v in value]  # type: ignore[union-attr]
    return [float(value)]  # type: ignore[arg-type]


def choose_window_index(ds: Dataset, choice: str) -> int:
    """Pick one of several windows deterministically: 'first', 'widest' or 'narrowest' (ties -> lowest index)."""
    count = window_count(ds)
    if count <= 1 or choice == "first":
        return 0
    widths = _as_list(ds.WindowWidth)[:count]
    order = np.argmax(widths) if choice == "widest" else np.argmin(widths)
    return int(order)


def voi_output_range(ds: Dataset, uses_lut_sequence: bool) -> tuple[float, float]:
    """The value range the VOI step maps into (as pydicom defines it), so the result can be scaled to [0, 1]."""
    if uses_lut_sequence:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits_stored = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits_stored - 1)
    else:
        low, high = float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return (low, high) if low <= high else (high, low)


def has_voi(ds: Dataset) -> bool:
    """True when the dataset carries a VOI LUT Sequence or window centre/width."""
    return bool(ds.get("VOILUTSequence")) or window_count(ds) > 0


def apply_voi_unit(values: np.ndarray, ds: Dataset, choice: str = "first", prefer_lut: bool = True) -> np.ndarray:
    """Apply the dataset's VOI (LUT Sequence or LINEAR/LINEAR_EXACT/SIGMOID window) and scale to [0, 1] float64.

    `values` are modality values. pydicom's apply_voi_lut does the transform; we only choose the window and rescale.
    """
    uses_lut = bool(ds.get("VOILUTSequence")) and (prefer_lut or window_count(ds) == 0)
    index = 0 if uses_lut else choose_window_index(ds, choice)
    if uses_lut:  # LUT inputs are integer modality values; pydicom warns on (and may misindex) floats
        values = np.rint(values).astype(np.int64)
    try:
        out = apply_voi_lut(values, ds, index=index, prefer_lut=uses_lut)
    except (ValueError, AttributeError, IndexError, KeyError) as exc:
        raise DicomRejected(f"invalid VOI LUT / window ({exc})") from exc
    low, high = voi_output_range(ds, uses_lut)
    if high <= low:
        raise DicomRejected("invalid VOI output range")
    return np.clip((np.asarray(out, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def scale_percentiles(values: np.ndarray, low_pct: float, high_pct: float) -> np.ndarray:
    """Scale to [0, 1] between two percentiles of the values (used when there is no VOI)."""
    if low_pct <= 0.0 and high_pct >= 100.0:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = (float(v) for v in np.percentile(values, [low_pct, high_pct]))
    if high <= low:
        raise DicomRejected("image has constant intensity")
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def invert_if_monochrome1(unit: np.ndarray, ds: Dataset) -> np.ndarray:
    """MONOCHROME1 (high value = dark) becomes MONOCHROME2 (high value = bright) on a [0, 1] image."""
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        return 1.0 - unit
    return unit
