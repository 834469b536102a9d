"""A site whose cache does not match the server's `preprocess` declines, naming both; on-the-fly only if allowed."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from bcvlm_client.preprocess_agreement import preprocessing_mismatch
from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.reply_schema import DeclineReason
from bcvlm_client.run_settings import RoundSettings
from bcvlm_client.site_config import load_site_config
from bcvlm_model.data.cache import cached_array_path
from bcvlm_model.data.manifest import read_manifest
from bcvlm_testing.federation_sites import (
    make_site,
    site_trainer_factory,
    tiny_preprocess,
    tiny_round_config,
)

OTHER_SIZE = replace(tiny_preprocess(), image_height=128, image_width=64)  # the sites' caches are 64x32


def _settings(preprocess) -> RoundSettings:
    return RoundSettings.from_config(tiny_round_config(preprocess=preprocess))


def _allow_decoding_on_the_fly(site_yaml: Path) -> None:
    raw = yaml.safe_load(site_yaml.read_text())
    raw["data"]["decode_on_the_fly"] = True
    site_yaml.write_text(yaml.safe_dump(raw))


def test_a_site_prepared_at_another_size_declines_the_round_and_spends_nothing(tmp_path, caplog) -> None:
    site_yaml = make_site(tmp_path, "site")
    site = load_site_config(site_yaml)
    arrays = [np.ones(3, dtype=np.float32)]
    with caplog.at_level(logging.WARNING, logger="bcvlm_client.site"):
        update, examples, metrics = site_trainer_factory(site).fit(arrays, _settings(OTHER_SIZE), run_id=1)
    assert metrics["declined"] == DeclineReason.PREPROCESS_MISMATCH
    assert examples == 0 and all(not array.any() for array in update)
    assert SitePrivacyLedger.open(site.state_dir).epsilon_spent == 0.0
    assert "PREPROCESS_MISMATCH" in caplog.text and "128x64" in caplog.text and "64x32" in caplog.text


def test_the_reason_names_the_server_and_the_site_settings(tmp_path) -> None:
    site = load_site_config(make_site(tmp_path, "site"))
    reason = preprocessing_mismatch(site, OTHER_SIZE)
    assert reason is not None
    assert "server asks for preprocessing 128x64" in reason and "the cache holds 64x32" in reason
    assert "image_height 128 vs 64" in reason and "image_width 64 vs 32" in reason
    assert "12 of 12 training images have no array" in reason and "decode_on_the_fly" in reason


def test_a_cache_prepared_with_the_servers_settings_is_admitted(tmp_path) -> None:
    site = load_site_config(make_site(tmp_path, "site"))
    assert preprocessing_mismatch(site, tiny_preprocess()) is None


def test_a_cache_missing_one_training_image_declines(tmp_path) -> None:
    site = load_site_config(make_site(tmp_path, "site"))
    first = read_manifest(site.data.manifest).query("split == 'train'")["image_id"].iloc[0]
    cached_array_path(site.data.cache_dir, tiny_preprocess(), first).unlink()
    reason = preprocessing_mismatch(site, tiny_preprocess())
    assert reason is not None and "1 of 12 training images" in reason


def test_decoding_on_the_fly_admits_any_preprocessing_when_the_site_allows_it(tmp_path) -> None:
    site_yaml = make_site(tmp_path, "site")
    _allow_decoding_on_the_fly(site_yaml)
    assert preprocessing_mismatch(load_site_config(site_yaml), OTHER_SIZE) is None
