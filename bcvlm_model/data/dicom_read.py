"""Read a DICOM file and decode its pixels, turning every failure into DicomRejected with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.pixel_length import check_native_pixel_length

MAMMOGRAPHY_MODALITIES = ("MG",)
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
DIGITAL_MAMMOGRAPHY_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"


def _dcmread_or_reject(path: str | os.PathLike[str], **dcmread_options: object) -> Dataset:
    """`pydicom.dcmread` with missing, empty, non-DICOM and unreadable files turned into DicomRejected."""
    source = Path(path)
    if not source.is_file():
        raise DicomRejected("file not found", str(source))
    if source.stat().st_size == 0:
        raise DicomRejected("empty file", str(source))
    try:
        return pydicom.dcmread(source, **dcmread_options)  # type: ignore[arg-type]
    except InvalidDicomError as exc:
        raise DicomRejected(f"not a DICOM file ({exc})", str(source)) from exc
    except Exception as exc:  # truncated headers raise EOFError/struct errors/ValueError inside pydicom
        raise DicomRejected(f"unreadable DICOM header ({type(exc).__name__}: {exc})", str(source)) from exc


def read_dicom(path: str | os.PathLike[str], stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file; unreadable, non-DICOM or empty files raise DicomRejected."""
    return _dcmread_or_reject(path, stop_before_pixels=stop_before_pixels)


def check_mammography(ds: Dataset, path: str | None = None) -> None:
    """Reject datasets that are not mammograms (Modality), lack pixel data or are not monochrome."""
    if "Modality" not in ds and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise DicomRejected("corrupt or non-image DICOM: no Modality, SOP Class or pixel data", path)
    modality = str(ds.get("Modality", "")).upper()
    if modality not in MAMMOGRAPHY_MODALITIES:
        raise DicomRejected(f"not a mammogram: Modality '{modality or 'missing'}'", path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomRejected("no pixel data", path)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in MONOCHROME:
        raise DicomRejected(f"unsupported PhotometricInterpretation '{photometric or 'missing'}'", path)


def is_for_processing(ds: Dataset) -> bool:
    """True when the image is a For-Processing (raw) mammogram: PresentationIntentType, ImageType or SOP class."""
    if str(ds.get("PresentationIntentType", "")).upper() == "FOR PROCESSING":
        return True
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if any("FOR PROCESSING" in v for v in image_type):
        return True
    return str(ds.get("SOPClassUID", "")) == DIGITAL_MAMMOGRAPHY_FOR_PROCESSING


def decode_pixels(ds: Dataset, path: str | None = None) -> np.ndarray:
    """Decode the stored pixel values (first frame) to a 2-D integer or float array; failures are rejects."""
    check_native_pixel_length(ds, path)
    try:
        pixels = ds.pixel_array
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # truncated data, missing decoder, bad header fields; pylibjpeg-rle panics
        # (pyo3 PanicException, a BaseException) on RLE segments longer than Rows x Columns
        raise DicomRejected(f"pixel data could not be decoded ({type(exc).__name__}: {exc})", path) from exc
    if pixels.ndim == 3:
        pixels = pixels[0]
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise DicomRejected(f"unexpected pixel array shape {pixels.shape}", path)
    return pixels


def read_dicom_header(path: str | os.PathLike[str]) -> Dataset:
    """Parse a DICOM file's tags without loading large values (pixel data stays on disk but is known to exist)."""
    return _dcmread_or_reject(path, defer_size="64 KB")
