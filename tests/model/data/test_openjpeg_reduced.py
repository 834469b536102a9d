"""OpenJPEG through ctypes: full-level decodes are bit-exact, reduced levels approximate a 2x2^r block mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless

from bcvlm_model.data.dicom_read import read_dicom
from bcvlm_model.data.openjpeg_reduced import (
    OpenJpegError,
    available_libraries,
    decode_reduced,
    reduction_for_target,
)
from bcvlm_testing.mg_fixtures import make_mg_dataset

LIBRARIES = available_libraries()


def _codestream(ds) -> bytes:
    return next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.fixture(scope="module")
def small_j2k(tmp_path_factory):
    """A 96x48 14-bit random image compressed with pydicom's JPEG 2000 encoder: (codestream, pixels)."""
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 2**14, size=(96, 48), dtype=np.uint16)
    ds = make_mg_dataset(pixels, bits_stored=14)
    ds.compress(JPEG2000Lossless, pixels)
    return _codestream(ds), pixels


@pytest.fixture(scope="module")
def real_j2k(real_lcc_jpeg2000):
    """The real CBIS-DDSM LCC image re-encoded as lossless JPEG 2000: (codestream, full-resolution pixels)."""
    ds = read_dicom(real_lcc_jpeg2000)
    return _codestream(ds), ds.pixel_array


def test_an_openjpeg_build_is_found():
    assert LIBRARIES, "neither python-gdcm nor pylibjpeg-openjpeg provided a loadable OpenJPEG"
    assert all(lib.version.startswith("2.") for lib in LIBRARIES)


@pytest.mark.parametrize("library", LIBRARIES, ids=[lib.name for lib in LIBRARIES])
@pytest.mark.parametrize("threads", [1, 2])
def test_full_level_decode_is_bit_exact(small_j2k, library, threads):
    codestream, pixels = small_j2k
    decoded = decode_reduced(codestream, 0, threads=threads, library=library)
    assert decoded.reduce == 0
    np.testing.assert_array_equal(decoded.pixels, pixels)


@pytest.mark.parametrize("library", LIBRARIES, ids=[lib.name for lib in LIBRARIES])
def test_reduced_level_halves_each_side_per_level(small_j2k, library):
    codestream, pixels = small_j2k
    decoded = decode_reduced(codestream, 2, library=library)
    assert decoded.reduce == 2
    assert decoded.pixels.shape == (math.ceil(96 / 4), math.ceil(48 / 4))


def test_reduction_beyond_the_codestream_levels_uses_the_deepest_one(small_j2k):
    codestream, _ = small_j2k
    decoded = decode_reduced(codestream, 30)
    assert 0 < decoded.reduce < 30
    assert decoded.pixels.shape == (math.ceil(96 / 2**decoded.reduce), math.ceil(48 / 2**decoded.reduce))


def test_damaged_codestream_raises_with_openjpeg_detail(small_j2k):
    codestream, _ = small_j2k
    with pytest.raises(OpenJpegError, match="OpenJPEG"):
        decode_reduced(codestream[: len(codestream) // 3] + b"\x00" * 64, 1)


@pytest.mark.parametrize(
    ("rows", "columns", "target", "expected"),
    [
        (4432, 2864, (2048, 1024), 1),  # 2216x1432 still covers 2048x1024; 1108x716 does not
        (4432, 2864, (512, 256), 3),
        (4432, 2864, (4096, 2048), 0),
        (1000, 1000, (4096, 2048), 0),  # smaller than the target: never reduced
        (4096, 2048, (2048, 1024), 1),  # exactly half still covers
    ],
)
def test_reduction_for_target_is_the_deepest_level_covering_both_sides(rows, columns, target, expected):
    assert reduction_for_target(rows, columns, *target) == expected


def test_reduced_real_mammogram_matches_full_decode_block_mean(real_j2k):
    """Tolerance: mean |diff| <= 0.3 % and 99th percentile <= 3 % of the image's value range (measured 0.17 %
    and 1.4 %); the 5/3 wavelet's low-pass differs from a box filter only at sharp edges (burnt-in labels)."""
    codestream, full = real_j2k
    decoded = decode_reduced(codestream, 1)
    assert decoded.reduce == 1 and decoded.pixels.shape == (math.ceil(full.shape[0] / 2), math.ceil(full.shape[1] / 2))
    h, w = full.shape[0] // 2 * 2, full.shape[1] // 2 * 2
    block_mean = full[:h, :w].astype(np.float64).reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    diff = np.abs(decoded.pixels[: h // 2, : w // 2].astype(np.float64) - block_mean) / float(np.ptp(full))
    assert diff.mean() <= 0.003
    assert np.percentile(diff, 99) <= 0.03
