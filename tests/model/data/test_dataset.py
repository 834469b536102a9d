"""MammographyDataset without decoding on the fly: a missing cached array is an error, never a silent DICOM decode."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bcvlm_model.data.dataset import MammographyDataset
from bcvlm_model.data.manifest import read_manifest
from bcvlm_testing.federation_sites import make_site, tiny_preprocess


def test_a_missing_cached_array_raises_when_decoding_on_the_fly_is_off(tmp_path) -> None:
    folder = make_site(tmp_path, "site").parent
    manifest = read_manifest(folder / "manifest.csv")
    other_size = replace(tiny_preprocess(), image_height=128, image_width=64)
    dataset = MammographyDataset(manifest, other_size, folder / "cache", decode_on_the_fly=False)
    with pytest.raises(FileNotFoundError, match=r"128x64.*decode_on_the_fly"):
        dataset[0]


def test_cached_arrays_load_when_decoding_on_the_fly_is_off(tmp_path) -> None:
    folder = make_site(tmp_path, "site").parent
    dataset = MammographyDataset(
        read_manifest(folder / "manifest.csv"), tiny_preprocess(), folder / "cache", decode_on_the_fly=False
    )
    assert dataset[0]["image"].shape == (1, 64, 32)


def test_no_cache_and_no_decoding_is_refused_at_construction(tmp_path) -> None:
    folder = make_site(tmp_path, "site").parent
    with pytest.raises(ValueError, match="decode_on_the_fly"):
        MammographyDataset(read_manifest(folder / "manifest.csv"), tiny_preprocess(), None, decode_on_the_fly=False)
