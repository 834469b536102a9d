"""Synthetic cohort reuse: same settings reuse it; other settings regenerate it without stale cached images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.data.dataset import MammographyDataset
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.generate import GENERATOR_VERSION
from bcvlm_simulation.cohort import COHORT_STAMP, make_synthetic_cohort

PREPROCESS = PreprocessConfig(image_height=64, image_width=32)


def _images(folder: Path, synth: SynthConfig) -> dict[str, np.ndarray]:
    manifest, cache = make_synthetic_cohort(synth, PREPROCESS, folder, progress=False)
    dataset = MammographyDataset(manifest, PREPROCESS, cache_dir=cache)
    return {str(manifest.loc[i, "image_id"]): np.asarray(dataset[i]["image"]) for i in range(len(manifest))}


def test_changed_settings_regenerate_without_stale_images(tmp_path: Path) -> None:
    first = SynthConfig(n_patients=3, height=64, width=32, n_sites=1, seed=0)
    second = SynthConfig(n_patients=3, height=64, width=32, n_sites=1, seed=5)
    old = _images(tmp_path / "reused", first)
    new = _images(tmp_path / "reused", second)
    fresh = _images(tmp_path / "fresh", second)
    assert new.keys() == fresh.keys()
    assert all(np.array_equal(new[key], fresh[key]) for key in fresh)
    shared = old.keys() & new.keys()
    assert shared, "the two seeds should reuse image ids, which is what makes stale images possible"
    assert any(not np.array_equal(old[key], new[key]) for key in shared)
    stamp = tmp_path / "reused" / "simulation_cohort.json"
    before = stamp.stat().st_mtime_ns
    _images(tmp_path / "reused", second)  # same settings: reused, not regenerated
    assert stamp.stat().st_mtime_ns == before


def test_a_cohort_of_an_older_generator_is_made_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synth = SynthConfig(n_patients=2, height=64, width=32, n_sites=1, seed=0)
    make_synthetic_cohort(synth, PREPROCESS, tmp_path, progress=False)
    stamp = tmp_path / COHORT_STAMP
    old = read_json(stamp)
    old["generator_version"] = GENERATOR_VERSION - 1
    atomic_write_json(stamp, old)
    capsys.readouterr()
    make_synthetic_cohort(synth, PREPROCESS, tmp_path, progress=False)
    assert "generating the synthetic cohort" in capsys.readouterr().out
    assert read_json(stamp)["generator_version"] == GENERATOR_VERSION
