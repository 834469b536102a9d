"""Write a synthetic attenuation map as a real MG DICOM file in a vendor's style (bits, photometric, VOI, rescale)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from bcvlm_model.atomic_io import atomic_write_bytes
from bcvlm_model.data.synth.config import TransferSyntax
from bcvlm_model.data.synth.sites import VendorStyle

DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
TRANSFER_SYNTAXES = {
    TransferSyntax.explicit: ExplicitVRLittleEndian,
    TransferSyntax.rle: RLELossless,
    TransferSyntax.jpeg2000: JPEG2000Lossless,
}
STANDARD_PATIENT_ORIENTATION = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}


@dataclass(frozen=True)
class ImageTags:
    """Identity and metadata of one synthetic image."""

    patient_id: str
    image_id: str
    study_key: str
    laterality: str
    view: str
    age: int | None
    """None = no age recorded (no PatientAge element)."""
    implant: bool


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=["bcvlm-synth", *parts])


def stored_values(attenuation: np.ndarray, vendor: VendorStyle) -> np.ndarray:
    """Vendor curve: attenuation in [0, 1] -> stored integers (MONOCHROME1 stores the inverse)."""
    full = 2**vendor.bits_stored - 1
    curve = vendor.low_fraction + (vendor.high_fraction - vendor.low_fraction) * np.power(attenuation, vendor.gamma)
    values = np.round(curve * full)
    if vendor.photometric == "MONOCHROME1":
        values = full - values
    return np.clip(values, 0, full).astype(np.uint16)


def _window_for(vendor: VendorStyle, attenuation_low: float, attenuation_high: float) -> tuple[float, float]:
    """Window (centre, width) in modality units covering the given attenuation range."""
    full = 2**vendor.bits_stored - 1

    def modality(att: float) -> float:
        value = (vendor.low_fraction + (vendor.high_fraction - vendor.low_fraction) * att**vendor.gamma) * full
        if vendor.photometric == "MONOCHROME1":
            value = full - value
        return value * vendor.rescale_slope + vendor.rescale_intercept

    a, b = sorted((modality(attenuation_low), modality(attenuation_high)))
    return round((a + b) / 2.0, 1), round(max(b - a, 2.0), 1)


def add_voi(ds: Dataset, vendor: VendorStyle) -> None:
    """Write the vendor's VOI: one or several windows (LINEAR / LINEAR_EXACT / SIGMOID) or a VOI LUT Sequence."""
    if vendor.voi == "none":
        return
    centre, width = _window_for(vendor, 0.0, 1.0)
    if vendor.voi == "lut_sequence":
        full = 2**vendor.bits_stored - 1
        entries = np.arange(full + 1, dtype=np.float64)
        low, high = vendor.low_fraction * full, vendor.high_fraction * full
        lut = np.round(65535 * np.clip((entries - low) / (high - low), 0, 1) ** 0.9).astype(np.uint16)
        item = Dataset()
        item.LUTDescriptor = [full + 1, 0, 16]
        item.LUTExplanation = "SYNTHETIC GAMMA 0.9"
        item.add_new("LUTData", "OW", lut.tobytes())
        ds.VOILUTSequence = DicomSequence([item])
        return
    if vendor.voi == "window_multi":
        narrow = _window_for(vendor, 0.25, 0.95)
        ds.WindowCenter = [centre, narrow[0], centre]
        ds.WindowWidth = [width, narrow[1], width * 1.2]
        ds.WindowCenterWidthExplanation = ["NORMAL", "HARDER", "SOFTER"]
        ds.VOILUTFunction = "LINEAR"
        return
    ds.WindowCenter, ds.WindowWidth = centre, width
    ds.VOILUTFunction = {"window": "LINEAR", "sigmoid": "SIGMOID", "linear_exact": "LINEAR_EXACT"}[vendor.voi]


def build_dataset(
    attenuation: np.ndarray, vendor: VendorStyle, tags: ImageTags, transfer_syntax: TransferSyntax
) -> Dataset:
    """A complete MG For-Presentation DICOM dataset holding the image in `vendor`'s style."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = _uid("image", tags.image_id)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid("study", tags.study_key)
    ds.SeriesInstanceUID = _uid("series", tags.study_key, tags.laterality, tags.view)
    ds.PatientID = tags.patient_id
    ds.PatientName = f"SYNTHETIC^{tags.patient_id}"
    ds.PatientSex = "F"
    if tags.age is not None:
        ds.PatientAge = f"{int(tags.age):03d}Y"
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", ""]
    ds.Manufacturer = vendor.manufacturer
    ds.ManufacturerModelName = vendor.model
    ds.ImageLaterality = tags.laterality
    ds.ViewPosition = tags.view
    ds.BreastImplantPresent = "YES" if tags.implant else "NO"
    ds.BodyPartExamined = "BREAST"
    ds.InstanceNumber = 1
    if vendor.standard_orientation_tag:
        ds.PatientOrientation = STANDARD_PATIENT_ORIENTATION[(tags.laterality, tags.view)]
    pixels = stored_values(attenuation, vendor)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = vendor.photometric
    ds.BitsAllocated = 16
    ds.BitsStored = vendor.bits_stored
    ds.HighBit = vendor.bits_stored - 1
    ds.PixelRepresentation = 0
    if vendor.rescale_slope != 1.0 or vendor.rescale_intercept != 0.0:
        ds.RescaleSlope = vendor.rescale_slope
        ds.RescaleIntercept = vendor.rescale_intercept
        ds.RescaleType = "US"
    add_voi(ds, vendor)
    ds.PixelData = pixels.tobytes()
    if transfer_syntax != TransferSyntax.explicit:
        ds.compress(TRANSFER_SYNTAXES[transfer_syntax], pixels)
    return ds


def write_dataset(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Serialise a dataset to a DICOM file atomically."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return atomic_write_bytes(path, buffer.getvalue())
