"""Pixel data longer than its header describes is rejected with a reason, never decoded as a garbage image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydicom.uid import RLELossless

from bcvlm_model.data.dicom_read import decode_pixels, read_dicom
from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.prepare import run_prepare
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_testing.mg_fixtures import breast_pixels, make_mg_dataset, write_mg

PIXELS = breast_pixels(64, 32)


def _save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def test_wrong_rows_is_rejected_with_the_sizes(tmp_path):
    ds = make_mg_dataset(PIXELS)
    ds.Rows = 32  # half the real height: pydicom would return two "frames" and the reader the first
    path = _save(ds, tmp_path / "rows.dcm")
    with pytest.raises(DicomRejected, match=r"pixel data is longer than the header says: 4096 bytes.*= 2048 bytes"):
        decode_pixels(read_dicom(path), str(path))


def test_eight_bit_bits_allocated_over_sixteen_bit_data_is_rejected(tmp_path):
    ds = make_mg_dataset(PIXELS)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    path = _save(ds, tmp_path / "bits.dcm")
    with pytest.raises(DicomRejected, match="BitsAllocated 8/8"):
        decode_pixels(read_dicom(path), str(path))


def test_a_matching_header_still_decodes(tmp_path):
    path = write_mg(tmp_path / "ok.dcm", PIXELS)
    np.testing.assert_array_equal(decode_pixels(read_dicom(path)), PIXELS)


def test_rle_with_too_few_rows_is_a_reject_not_a_crash(tmp_path):
    """pylibjpeg-rle panics (a BaseException) when a segment holds more than Rows x Columns values."""
    ds = make_mg_dataset(PIXELS)
    ds.compress(RLELossless)
    ds.Rows = 32
    path = _save(ds, tmp_path / "rle.dcm")
    with pytest.raises(DicomRejected, match="pixel data could not be decoded"):
        decode_pixels(read_dicom(path), str(path))


def test_prepare_lists_the_wrong_header_in_rejects(tmp_path):
    root = tmp_path / "in"
    tags = dict(ImageLaterality="L", ViewPosition="CC")
    write_mg(root / "good.dcm", PIXELS, **tags)
    ds = make_mg_dataset(PIXELS, **tags)
    ds.Rows = 40
    _save(ds, root / "wrong_rows.dcm")
    summary = run_prepare(
        DataSourceConfig(kind="dicom_folder", root=str(root)),
        PreprocessConfig(image_height=32, image_width=16),
        tmp_path / "out",
        progress=False,
    )
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", dtype=str)
    assert summary.rejected == 1 and rejects["path"].iloc[0].endswith("wrong_rows.dcm")
    assert rejects["stage"].iloc[0] == "pixels" and "longer than the header says" in rejects["reason"].iloc[0]
