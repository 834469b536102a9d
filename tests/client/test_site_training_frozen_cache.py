"""SiteTrainer.fit with the frozen-feature cache: the same DP update as without it, the cache on the site's disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from bcvlm_client.reply_schema import DeclineReason
from bcvlm_client.run_settings import RoundSettings
from bcvlm_client.site_config import load_site_config
from bcvlm_testing.federation_sites import (
    make_site,
    site_trainer_factory,
    tiny_global_arrays,
    tiny_round_config,
)

PRIVACY = {
    "enabled": True,
    "target_epsilon": 50.0,
    "delta": 1e-3,
    "max_grad_norm": 0.1,
    "insecure_reproducible_noise": True,
}


def _settings() -> RoundSettings:
    return RoundSettings.from_config(tiny_round_config(local_steps=0))


def _site(root: Path, cache: bool, images_per_patient: int = 1) -> Path:
    site_yaml = make_site(  # val_fraction 0: all 12 images train (the cache holds training records only)
        root, "site", seed=3, privacy=PRIVACY, images_per_patient=images_per_patient, val_fraction=0.0
    )
    raw = yaml.safe_load(site_yaml.read_text())
    raw["compute"].update(frozen_feature_cache=cache, frozen_feature_dtype="float32")
    site_yaml.write_text(yaml.safe_dump(raw))
    return site_yaml


def _fit(site_yaml: Path) -> list[np.ndarray]:
    arrays = tiny_global_arrays()
    update, _, metrics = site_trainer_factory(load_site_config(site_yaml)).fit(arrays, _settings(), run_id=1)
    assert metrics["declined"] == DeclineReason.TRAINED
    return update


def test_a_cached_dp_round_uploads_the_uncached_update(tmp_path) -> None:
    plain_yaml = _site(tmp_path / "plain", cache=False)
    plain = _fit(plain_yaml)
    cached_yaml = _site(tmp_path / "cached", cache=True)
    cached = _fit(cached_yaml)
    assert max(float(np.abs(x).max()) for x in plain) > 1e-4  # the round did change the model
    assert max(float(np.abs(x - y).max()) for x, y in zip(plain, cached)) < 1e-4
    image_entries = list((Path(load_site_config(cached_yaml).state_dir) / "frozen_features").glob("image-*/*.npz"))
    assert len(image_entries) == 12  # every training record's image prefix, on the site's disk
    assert not (Path(load_site_config(plain_yaml).state_dir) / "frozen_features").exists()


def test_patient_level_dp_from_the_cache_uploads_the_uncached_update(tmp_path) -> None:
    """Patients with two images each: the loader's items are patients, and the cache still gives the same update."""
    plain = _fit(_site(tmp_path / "plain", cache=False, images_per_patient=2))
    cached = _fit(_site(tmp_path / "cached", cache=True, images_per_patient=2))
    assert max(float(np.abs(x).max()) for x in plain) > 1e-4
    assert max(float(np.abs(x - y).max()) for x, y in zip(plain, cached)) < 1e-4
