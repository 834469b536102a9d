"""Refuse uncompressed pixel data longer than its header says, so a wrong header never decodes as an image."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_expected_length

from bcvlm_model.data.errors import DicomRejected


def expected_pixel_bytes(ds: Dataset) -> int:
    """Rows x Columns x frames x samples x bytes per sample (BitsAllocated 1 packs 8 pixels a byte)."""
    return int(get_expected_length(ds, unit="bytes"))


def check_native_pixel_length(ds: Dataset, path: str | None = None) -> None:
    """Raise DicomRejected when uncompressed PixelData is longer than the header describes.

    pydicom reads extra bytes as extra frames (and a reader taking the first frame then shows a garbage image):
    a wrong Rows value, or BitsAllocated 8 over 16-bit data, both look like that. Shorter data is left to the
    decoder, which rejects it as truncated. Compressed data is checked by its decoder.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if "PixelData" not in ds or syntax is None or syntax.is_encapsulated:
        return
    try:
        expected = expected_pixel_bytes(ds)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DicomRejected(f"pixel data size cannot be checked: header incomplete ({exc})", path) from exc
    actual = len(ds.PixelData)
    if actual > expected + expected % 2:  # one byte of padding makes odd lengths even
        frames = ds.get("NumberOfFrames") or 1
        raise DicomRejected(
            f"pixel data is longer than the header says: {actual} bytes, but Rows {ds.get('Rows')} x Columns "
            f"{ds.get('Columns')} x frames {frames} x samples {ds.get('SamplesPerPixel', 1)} x BitsAllocated "
            f"{ds.get('BitsAllocated')}/8 = {expected} bytes (wrong Rows/Columns or BitsAllocated?)",
            path,
        )
