"""Decode a DICOM's pixels for a target size: JPEG 2000 at the reduced resolution level just above it, else in full."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, UID, JPEG2000Lossless

from bcvlm_model.data.dicom_read import decode_pixels
from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.openjpeg_reduced import OpenJpegError, decode_reduced, reduction_for_target

JPEG2000_SYNTAXES = (JPEG2000Lossless, JPEG2000)
# HTJ2K (1.2.840.10008.1.2.4.201-203) is left to pydicom: GDCM's OpenJPEG 2.3 cannot decode it


@dataclass(frozen=True)
class DecodedPixels:
    """Stored pixel values of the first frame and the JPEG 2000 resolution reduction applied (0 = full size)."""

    pixels: np.ndarray
    reduce: int


def _reducible(ds: Dataset) -> bool:
    """True for single-frame, single-sample JPEG 2000 data whose header needs none of pydicom's corrections."""
    syntax = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")))
    return (
        syntax in JPEG2000_SYNTAXES
        and "PixelData" in ds
        and int(ds.get("NumberOfFrames", 1) or 1) == 1
        and int(ds.get("SamplesPerPixel", 1)) == 1
    )


def _matches_header(pixels: np.ndarray, ds: Dataset) -> bool:
    """The codestream's signedness and size agree with the DICOM header (else pydicom's corrections are needed)."""
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return bool(np.issubdtype(pixels.dtype, np.signedinteger)) == signed and int(ds.get("BitsStored", 16)) <= 16


def decode_for_target(
    ds: Dataset, target_height: int, target_width: int, reduced: bool = True, threads: int = 1, path: str | None = None
) -> DecodedPixels:
    """Stored pixels (2-D) for an image that will be resized into target_height x target_width.

    With `reduced`, single-frame JPEG 2000 is decoded at the deepest resolution level at which both sides still
    cover the target (OpenJPEG `reduce`), with `threads` decoder threads; everything else, and JPEG 2000 whose
    header disagrees with its codestream, is decoded in full by pydicom. Failures raise DicomRejected.
    """
    if not reduced or not _reducible(ds):
        return DecodedPixels(decode_pixels(ds, path), 0)
    reduce = reduction_for_target(int(ds.Rows), int(ds.Columns), target_height, target_width)
    if reduce == 0 and threads <= 1:
        return DecodedPixels(decode_pixels(ds, path), 0)
    try:
        codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
        decoded = decode_reduced(codestream, reduce, threads)
    except (OpenJpegError, StopIteration, ValueError) as exc:
        raise DicomRejected(f"pixel data could not be decoded ({type(exc).__name__}: {exc})", path) from exc
    if not _matches_header(decoded.pixels, ds):
        return DecodedPixels(decode_pixels(ds, path), 0)
    if decoded.pixels.ndim != 2 or min(decoded.pixels.shape) < 8:
        raise DicomRejected(f"unexpected pixel array shape {decoded.pixels.shape}", path)
    return DecodedPixels(decoded.pixels, decoded.reduce)
