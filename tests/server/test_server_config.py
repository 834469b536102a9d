"""ServerConfig loading: enum words, ranges and removed knobs are refused at load with the key named."""

from __future__ import annotations

import pytest

from bcvlm_model.config_io import ConfigError
from bcvlm_server.server_config import Strategy, load_server_config


def _load(tmp_path, text: str):
    path = tmp_path / "server.yaml"
    path.write_text("run_dir: runs/x\n" + text)
    return load_server_config(path)


def test_the_yaml_words_load_as_enum_members(tmp_path) -> None:
    cfg = _load(tmp_path, "strategy:\n  name: fedprox\nmodel:\n  kind: image_only\n")
    assert cfg.strategy.name is Strategy.fedprox and cfg.model.kind == "image_only"


def test_an_unknown_strategy_fails_at_load_naming_the_key_and_the_allowed_values(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"key 'strategy.name'.*'fedsgd'.*fedavg, fedprox, fedadam, fedmedian"):
        _load(tmp_path, "strategy:\n  name: fedsgd\n")


def test_an_unknown_preprocessing_policy_fails_at_load_naming_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"key 'preprocess.for_processing_policy'.*'keep'.*reject, percentile_window"):
        _load(tmp_path, "preprocess:\n  for_processing_policy: keep\n")


@pytest.mark.parametrize(
    "text, key",
    [
        ("local_train:\n  seed: 3\n", "local_train.seed"),
        ("local_train:\n  bf16: true\n", "local_train.bf16"),
        ("model:\n  autocast_bf16: true\n", "model.autocast_bf16"),
        ("model:\n  image_encoder:\n    vit_img_size: [64, 32]\n", "model.image_encoder.vit_img_size"),
    ],
)
def test_a_removed_knob_fails_at_load_naming_it(tmp_path, text, key) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        _load(tmp_path, text)


def test_a_range_check_fails_at_load_naming_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"key 'strategy.trim_fraction': must be in \[0, 0.5\), got 0.6"):
        _load(tmp_path, "strategy:\n  name: fedtrimmedavg\n  trim_fraction: 0.6\nsecagg:\n  enabled: false\n")


def test_a_robust_strategy_with_secagg_fails_at_load(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"key 'strategy.name': 'krum' needs individual updates"):
        _load(tmp_path, "strategy:\n  name: krum\n")


def test_an_absolute_share_count_reaches_flower_as_a_count(tmp_path) -> None:
    """Flower reads a float as a fraction of the sampled sites: 51.0 would mean 51 times as many shares as sites."""
    num_shares, threshold = _load(tmp_path, "secagg:\n  num_shares: 51\n").secagg.flower_share_counts()
    assert (num_shares, type(num_shares), threshold, type(threshold)) == (51, int, 0.67, float)


def test_a_share_fraction_reaches_flower_as_a_fraction(tmp_path) -> None:
    num_shares, _ = _load(tmp_path, "secagg:\n  num_shares: 0.5\n").secagg.flower_share_counts()
    assert (num_shares, type(num_shares)) == (0.5, float)


def test_a_share_count_that_is_neither_fraction_nor_whole_fails_at_load(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"key 'secagg.num_shares': must be a fraction in \(0, 1\] or a whole"):
        _load(tmp_path, "secagg:\n  num_shares: 2.5\n")
