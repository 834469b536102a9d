"""Compressed transfer syntaxes decode to the same pixels: RLE, JPEG 2000 (pydicom encoders), JPEG-LS (GDCM)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from bcvlm_model.data.dicom_read import decode_pixels, read_dicom
from bcvlm_model.data.pipeline import load_preprocessed
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.transcode import transcode_dicom
from bcvlm_testing.mg_fixtures import make_mg_dataset


@pytest.fixture
def reference(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 2**14, size=(96, 48), dtype=np.uint16)
    path = tmp_path / "plain.dcm"
    make_mg_dataset(pixels, bits_stored=14, WindowCenter=8192, WindowWidth=16384).save_as(
        path, enforce_file_format=True
    )
    return path, pixels


@pytest.mark.parametrize("uid", [RLELossless, JPEG2000Lossless])
def test_pydicom_encoded_syntaxes_round_trip(tmp_path, reference, uid):
    path, pixels = reference
    ds = read_dicom(path)
    ds.compress(uid, pixels)
    target = tmp_path / f"{uid.name}.dcm"
    ds.save_as(target, enforce_file_format=True)
    decoded = decode_pixels(read_dicom(target))
    assert read_dicom(target).file_meta.TransferSyntaxUID == uid
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("syntax", ["jpegls", "jpeg2000", "rle"])
def test_gdcm_transcoded_files_give_identical_model_input(tmp_path, reference, syntax):
    path, _ = reference
    target = transcode_dicom(path, tmp_path / f"{syntax}.dcm", syntax)
    # full decodes: the reduced-resolution JPEG 2000 path is an approximation, bounded in test_jpeg2000_decode.py
    cfg = PreprocessConfig(image_height=48, image_width=24, jpeg2000_reduced_decode=False)
    np.testing.assert_array_equal(load_preprocessed(target, cfg), load_preprocessed(path, cfg))
    assert "Lossless" in read_dicom(target).file_meta.TransferSyntaxUID.name or syntax == "jpeg2000"
