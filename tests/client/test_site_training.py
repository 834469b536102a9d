"""SiteTrainer.fit: secret DP noise, the delta bound, no budget spent before the data loads, the packed update."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from bcvlm_client.array_packing import PackedModelError, pack_model
from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.reply_schema import DeclineReason, decode_histogram
from bcvlm_client.run_settings import RoundSettings, encode_round_settings
from bcvlm_client.site_config import load_site_config
from bcvlm_model.config_io import ConfigError
from bcvlm_model.data.cache import cached_array_path
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.parameters import federated_parameter_names, federated_parameter_shapes
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig, DPUpdates
from bcvlm_model.privacy.federated_model import build_federated_model
from bcvlm_model.text import TextConfig
from bcvlm_model.training.local_train_config import LocalTrainConfig
from bcvlm_server.server_app import trainable_arrays
from bcvlm_testing.federation_sites import (
    TINY_DP_TRAINABLE,
    make_site,
    site_trainer_factory,
    tiny_global_arrays,
    tiny_model_config,
    tiny_preprocess,
    tiny_round_config,
)

RUN_ID = 5


def settings(server_round: int = 1) -> RoundSettings:
    return RoundSettings.from_config(tiny_round_config(server_round))


@pytest.fixture(scope="module")
def global_arrays() -> list[np.ndarray]:
    return tiny_global_arrays()


def fit_update(site_yaml: Path, arrays: list[np.ndarray]) -> list[np.ndarray]:
    update, num_examples, metrics = site_trainer_factory(load_site_config(site_yaml)).fit(arrays, settings(), RUN_ID)
    assert metrics["declined"] == DeclineReason.TRAINED and num_examples > 0
    return update


def charged(site_yaml: Path) -> list[dict]:
    return [
        entry
        for entry in SitePrivacyLedger.open(load_site_config(site_yaml).state_dir).rounds
        if entry["kind"] == "charged"
    ]


def test_identical_fits_upload_different_noise(tmp_path, global_arrays) -> None:
    """Same data, site seed, round and global model in two site folders: the DP updates differ."""
    first = fit_update(make_site(tmp_path / "a", "site", seed=3), global_arrays)
    second = fit_update(make_site(tmp_path / "b", "site", seed=3), global_arrays)
    assert any(not np.allclose(x, y) for x, y in zip(first, second))


def test_the_insecure_setting_makes_identical_fits_identical(tmp_path, global_arrays) -> None:
    """The control for the test above: with simulation's reproducible noise the same fits agree bit for bit."""
    privacy = {"enabled": True, "target_epsilon": 50.0, "delta": 1e-3, "insecure_reproducible_noise": True}
    first = fit_update(make_site(tmp_path / "a", "site", seed=3, privacy=privacy), global_arrays)
    second = fit_update(make_site(tmp_path / "b", "site", seed=3, privacy=privacy), global_arrays)
    assert all(np.array_equal(x, y) for x, y in zip(first, second))


def test_a_trained_round_uploads_one_packed_update_as_long_as_the_global_model(tmp_path, global_arrays) -> None:
    update = fit_update(make_site(tmp_path, "site"), global_arrays)
    assert [(array.shape, array.dtype) for array in update] == [(global_arrays[0].shape, np.float32)]
    assert np.any(update[0])


def test_a_declined_round_uploads_one_packed_zero_vector(tmp_path, global_arrays) -> None:
    site = load_site_config(make_site(tmp_path, "site"))
    no_dp = RoundSettings.from_config({**tiny_round_config(1), "dp": False})  # this site requires DP
    update, num_examples, metrics = site_trainer_factory(site).fit(global_arrays, no_dp, RUN_ID)
    assert metrics["declined"] == DeclineReason.DP_REQUIRED and num_examples == 0
    assert [array.shape for array in update] == [global_arrays[0].shape] and not np.any(update[0])


def test_a_global_model_of_the_wrong_length_is_refused_before_any_charge(tmp_path, global_arrays) -> None:
    site_yaml = make_site(tmp_path, "site")
    length = global_arrays[0].size
    with pytest.raises(PackedModelError, match=f"has {length - 1} values, the model has {length} "):
        site_trainer_factory(load_site_config(site_yaml)).fit([global_arrays[0][:-1]], settings(), RUN_ID)
    assert charged(site_yaml) == []


def test_a_delta_above_the_bound_is_refused_before_any_charge(tmp_path, global_arrays) -> None:
    site_yaml = make_site(tmp_path, "site", n_train=12, val_fraction=0.0)  # bound: 1 / (10 x 12) = 0.0083
    raw = yaml.safe_load(site_yaml.read_text())
    raw["privacy"]["delta"] = 0.01
    site_yaml.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"privacy\.delta.*0\.00833"):
        site_trainer_factory(load_site_config(site_yaml)).fit(global_arrays, settings(), RUN_ID)


def test_a_data_failure_charges_no_budget(tmp_path, global_arrays) -> None:
    site_yaml = make_site(tmp_path, "site")
    raw = yaml.safe_load(site_yaml.read_text())
    raw["data"]["decode_on_the_fly"] = True  # else the lost cache entries decline the round before any loading
    site_yaml.write_text(yaml.safe_dump(raw))
    site = load_site_config(site_yaml)
    train = read_manifest(site.data.manifest).query("split == 'train'")
    for image_id in train["image_id"]:  # every training image lost: no cache entry, no DICOM
        cached_array_path(site.data.cache_dir, tiny_preprocess(), image_id).unlink()
    with pytest.raises(Exception, match="missing.dcm|not found|No such file"):
        site_trainer_factory(site).fit(global_arrays, settings(), RUN_ID)
    assert charged(site_yaml) == []
    assert SitePrivacyLedger.open(site.state_dir).epsilon_spent == 0.0


def test_a_server_request_for_a_smaller_epsilon_is_honoured_and_a_larger_one_capped(tmp_path, global_arrays) -> None:
    noise = {}
    for name, requested in (("tighter", 5.0), ("looser", 500.0), ("own", None)):  # the site's own budget is 50
        site_yaml = make_site(tmp_path / name, "site")
        round_settings = settings(1)
        round_settings.dp_target_epsilon = requested
        site_trainer_factory(load_site_config(site_yaml)).fit(global_arrays, round_settings, RUN_ID)
        noise[name] = charged(site_yaml)[0]["noise_multiplier"]
    assert noise["tighter"] > noise["own"]
    assert noise["looser"] == pytest.approx(noise["own"])


def test_a_new_run_spends_the_budget_left_by_an_earlier_one(tmp_path, global_arrays) -> None:
    """A run stopped after round 1 of 2; a new run of 2 rounds trains both, within the site's budget."""
    site_yaml = make_site(tmp_path, "site", privacy={"enabled": True, "target_epsilon": 4.0, "delta": 1e-3})
    trainer = site_trainer_factory(load_site_config(site_yaml))
    *_, first = trainer.fit(global_arrays, settings(1), run_id=1)
    second_run = [trainer.fit(global_arrays, settings(r), run_id=2)[2] for r in (1, 2)]
    assert [metrics["declined"] for metrics in second_run] == [DeclineReason.TRAINED] * 2
    assert first["epsilon"] < second_run[0]["epsilon"] < second_run[1]["epsilon"] <= 4.0 + 1e-9
    noise = [entry["noise_multiplier"] for entry in charged(site_yaml)]
    assert noise[1] > noise[0]  # less budget left per remaining round: more noise


def hostile_evaluation_settings(n_bins: int) -> RoundSettings:
    return RoundSettings.from_config(
        encode_round_settings(
            server_round=1,
            planned_rounds=2,
            proximal_mu=0.0,
            n_bins=n_bins,
            model=tiny_model_config(),
            preprocess=tiny_preprocess(),
            text=TextConfig(),
            local_train=LocalTrainConfig(local_steps=2),
            dp_trainable=TINY_DP_TRAINABLE,
            dp=True,
        )
    )


def test_evaluation_replies_keep_the_site_bounds_whatever_bins_the_server_asks(tmp_path, global_arrays) -> None:
    site_yaml = make_site(tmp_path, "site", n_test=30)
    config = yaml.safe_load(site_yaml.read_text())
    config["evaluation"] = {"max_bins": 4, "min_cell_count": 6, "site_auc_min_cases": 100}
    site_yaml.write_text(yaml.safe_dump(config))
    loss, _, metrics = site_trainer_factory(load_site_config(site_yaml)).evaluate(
        global_arrays, hostile_evaluation_settings(n_bins=100_000)
    )
    assert loss == 0.0 and not any(key.startswith("auc_") for key in metrics)  # too few cases for a site AUC
    histogram = decode_histogram(metrics["hist_malignancy"], 100_000)
    cells = (histogram.positives + histogram.negatives)[(histogram.positives + histogram.negatives) > 0]
    assert 0 < len(cells) <= 4 and (cells >= 6).all() and cells.sum() == metrics["cases_malignancy"] == 30


def test_evaluation_from_the_frozen_feature_cache_releases_what_the_plain_model_does(tmp_path, global_arrays) -> None:
    released = {}
    for cache_on in (True, False):
        site_yaml = make_site(tmp_path / str(cache_on), "site", n_test=30)
        config = yaml.safe_load(site_yaml.read_text())
        config["compute"]["frozen_feature_cache"] = cache_on
        config["compute"]["frozen_feature_dtype"] = "float32"
        site_yaml.write_text(yaml.safe_dump(config))
        site = load_site_config(site_yaml)
        histograms, validation, metrics = site_trainer_factory(site).released_evaluation(global_arrays, settings())
        assert (Path(site.state_dir) / "frozen_features").exists() is cache_on
        released[cache_on] = (histograms, validation, metrics)
    assert released[True][2] == released[False][2]
    for task in released[True][0]:
        assert released[True][0][task] == released[False][0][task]
        assert released[True][1][task] == released[False][1][task]


@pytest.mark.parametrize(("val_fraction", "released"), [(0.5, 6), (0.0, 0)], ids=["validation", "no-validation"])
def test_the_evaluation_reply_carries_the_validation_histogram(tmp_path, global_arrays, val_fraction, released) -> None:
    site_yaml = make_site(
        tmp_path, "site", n_train=12, n_test=4, val_fraction=val_fraction, evaluation={"min_cell_count": 1}
    )
    _, _, metrics = site_trainer_factory(load_site_config(site_yaml)).evaluate(global_arrays, settings())
    validation = decode_histogram(metrics["val_hist_malignancy"], 100)
    assert validation.n_positive + validation.n_negative == released  # half of 12 training patients, or none
    assert metrics["cases_malignancy"] == 4  # the test split's own histogram is unchanged


def test_the_servers_dp_update_set_is_what_the_site_trains(tmp_path) -> None:
    """Asked to update the head only, the site's packed update is zero outside the head's parameters."""
    head_only = RoundSettings.from_config(
        tiny_round_config(1, dp_trainable=DPReadyConfig(image_trainable_stages=0, updates=DPUpdates.head))
    )
    model = build_federated_model(tiny_model_config(), head_only.dp_trainable)
    trainer = site_trainer_factory(load_site_config(make_site(tmp_path, "site")))
    update, _, metrics = trainer.fit(pack_model(trainable_arrays(model)), head_only, RUN_ID)
    assert metrics["declined"] == DeclineReason.TRAINED
    sizes = [int(np.prod(shape)) for shape in federated_parameter_shapes(model)]
    is_head = np.repeat([name.startswith("head.") for name in federated_parameter_names(model)], sizes)
    assert len(is_head) == len(update[0])
    assert np.any(update[0][is_head]) and not np.any(update[0][~is_head])
