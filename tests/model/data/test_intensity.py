"""Modality LUT, VOI (LINEAR, LINEAR_EXACT, SIGMOID, VOI LUT Sequence, several windows), MONOCHROME1, For-Processing."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.intensity import choose_window_index
from bcvlm_model.data.pipeline import load_preprocessed, to_unit_intensity
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_testing.mg_fixtures import make_mg_dataset

RAMP = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)  # 0 .. 4080, 12-bit


def _unit(ds, **cfg):
    unit, _ = to_unit_intensity(ds.pixel_array, ds, PreprocessConfig(**cfg))
    return unit


def test_linear_window_matches_dicom_formula():
    ds = make_mg_dataset(RAMP, WindowCenter=2000, WindowWidth=1001, VOILUTFunction="LINEAR")
    x = RAMP.astype(float)
    c, w = 2000 - 0.5, 1001 - 1
    expected = np.clip((x - c) / w + 0.5, 0, 1)
    expected[x <= c - w / 2] = 0.0
    expected[x > c + w / 2] = 1.0
    np.testing.assert_allclose(_unit(ds), expected, atol=1e-9)


def test_linear_exact_window_with_rescale():
    ds = make_mg_dataset(
        RAMP, WindowCenter=3000, WindowWidth=2000, VOILUTFunction="LINEAR_EXACT", RescaleSlope=2, RescaleIntercept=-100
    )
    modality = RAMP * 2.0 - 100
    expected = np.clip((modality - 3000) / 2000 + 0.5, 0, 1)
    np.testing.assert_allclose(_unit(ds), expected, atol=1e-9)


def test_sigmoid_window():
    ds = make_mg_dataset(RAMP, WindowCenter=2048, WindowWidth=1024, VOILUTFunction="SIGMOID")
    expected = 1.0 / (1.0 + np.exp(-4.0 * (RAMP - 2048.0) / 1024.0))
    np.testing.assert_allclose(_unit(ds), expected, atol=1e-9)


def test_voi_lut_sequence_is_preferred_and_applied():
    item = Dataset()
    item.LUTDescriptor = [4, 1000, 16]
    item.add_new("LUTData", "OW", np.array([0, 1000, 30000, 65535], dtype=np.uint16).tobytes())
    pixels = np.array([[0, 999, 1000, 1001], [1002, 1003, 1004, 4000]], dtype=np.uint16)
    pixels = np.tile(pixels, (4, 2))
    ds = make_mg_dataset(pixels, VOILUTSequence=Sequence([item]), WindowCenter=10, WindowWidth=2)
    lut = np.array([0, 1000, 30000, 65535]) / 65535
    expected = lut[np.clip(pixels.astype(int) - 1000, 0, 3)]
    np.testing.assert_allclose(_unit(ds), expected, atol=1e-9)
    # with prefer_voi_lut_sequence off, the (very narrow) window is used instead
    assert set(np.unique(_unit(ds, prefer_voi_lut_sequence=False))) <= {0.0, 1.0}


def test_several_windows_are_chosen_deterministically():
    ds = make_mg_dataset(RAMP, WindowCenter=[2000, 2000, 2000], WindowWidth=[1000, 4000, 500])
    assert choose_window_index(ds, "first") == 0
    assert choose_window_index(ds, "widest") == 1
    assert choose_window_index(ds, "narrowest") == 2
    widest = _unit(ds, voi_window_choice="widest")
    narrowest = _unit(ds, voi_window_choice="narrowest")
    assert np.count_nonzero((widest > 0) & (widest < 1)) > np.count_nonzero((narrowest > 0) & (narrowest < 1))


def test_monochrome1_is_inverted_and_monochrome2_is_not():
    window = dict(WindowCenter=2048, WindowWidth=4096, VOILUTFunction="LINEAR_EXACT")
    mono2 = _unit(make_mg_dataset(RAMP, photometric="MONOCHROME2", **window))
    mono1 = _unit(make_mg_dataset(RAMP, photometric="MONOCHROME1", **window))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-12)
    assert mono2[0, 0] == 0.0 and mono1[0, 0] == 1.0


def test_no_voi_scales_min_max_and_percentiles():
    ds = make_mg_dataset(RAMP)
    np.testing.assert_allclose(_unit(ds), (RAMP - 0.0) / 4080.0, atol=1e-12)
    clipped = _unit(ds, no_voi_low_percentile=10, no_voi_high_percentile=90)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    assert np.count_nonzero(clipped == 0.0) > 1


def test_for_processing_rejected_or_handled_explicitly():
    ds = make_mg_dataset(RAMP + 1, PresentationIntentType="FOR PROCESSING")
    with pytest.raises(DicomRejected, match="For-Processing"):
        _unit(ds)
    unit, kind = to_unit_intensity(ds.pixel_array, ds, PreprocessConfig(for_processing_policy="percentile_window"))
    assert kind == "for_processing_percentile" and unit.min() == 0.0 and unit.max() == 1.0


def test_end_to_end_keeps_16_bit_precision(tmp_path):
    # two neighbouring 16-bit values must stay distinguishable through the whole pipeline (no 8-bit step)
    pixels = np.full((64, 32), 30000, dtype=np.uint16)
    pixels[:, :16] = 30001
    pixels[0, 0], pixels[-1, -1] = 0, 65535
    path = tmp_path / "p.dcm"
    make_mg_dataset(pixels, bits_stored=16, PatientOrientation=["A", "R"]).save_as(path, enforce_file_format=True)
    image = load_preprocessed(path, PreprocessConfig(image_height=64, image_width=32, crop=False))
    assert image.dtype == np.float32 and image.shape == (64, 32)
    assert abs(float(image[20, 4] - image[20, 28]) - 1 / 65535) < 2e-6
