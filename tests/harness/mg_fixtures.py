"""Helpers of the data-layer tests: minimal MG DICOM datasets with chosen pixels and tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


def make_mg_dataset(
    pixels: np.ndarray, bits_stored: int = 12, photometric: str = "MONOCHROME2", **tags: Any
) -> Dataset:
    """A minimal valid MG dataset holding `pixels` (uint16), plus any extra tags."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.PatientID = "PAT1"
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def write_mg(path: Path, pixels: np.ndarray, **kwargs: Any) -> Path:
    """Write make_mg_dataset(...) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    make_mg_dataset(pixels, **kwargs).save_as(path, enforce_file_format=True)
    return path


def breast_pixels(height: int = 64, width: int = 32, chest_wall: str = "left", full: int = 4095) -> np.ndarray:
    """A half-disc of bright 'tissue' against the chest wall side, dark elsewhere (stored values)."""
    y = (np.arange(height)[:, None] + 0.5) / height
    x = (np.arange(width)[None, :] + 0.5) / width
    inside = (x / 0.7) ** 2 + ((y - 0.5) / 0.4) ** 2 <= 1.0
    image = np.where(inside, 0.6 * full, 0.02 * full).astype(np.uint16)
    return image if chest_wall == "left" else image[:, ::-1].copy()
