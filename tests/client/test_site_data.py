"""A site refuses to check, fit or evaluate on a manifest where a patient has images in two splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.run_settings import RoundSettings, encode_round_settings
from bcvlm_client.site_config import load_site_config
from bcvlm_client.site_data import summarise_site_data
from bcvlm_model.data.manifest import read_manifest, write_manifest
from bcvlm_model.data.split_guard import PatientOverlapError
from bcvlm_model.privacy.dp_ready import DPReadyConfig
from bcvlm_model.text import TextConfig
from bcvlm_model.training import LocalTrainConfig
from bcvlm_server.server_app import trainable_arrays
from federation_sites import SHARED_MODELS, make_site, site_trainer_factory, tiny_model_config, tiny_preprocess

DP_TRAINABLE = DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0)


def _settings() -> RoundSettings:
    return RoundSettings.from_config(encode_round_settings(
        server_round=1, planned_rounds=1, proximal_mu=0.0, n_bins=100, model=tiny_model_config(),
        preprocess=tiny_preprocess(), text=TextConfig(), local_train=LocalTrainConfig(local_steps=1),
        dp_trainable=DP_TRAINABLE, dp=True))


@pytest.fixture(scope="module")
def global_arrays() -> list[np.ndarray]:
    return trainable_arrays(SHARED_MODELS(tiny_model_config(), DP_TRAINABLE))


def _leak_a_training_patient_into_test(site_yaml: Path) -> str:
    """The first test image gets the patient id of a training image (its other images stay in train)."""
    site = load_site_config(site_yaml)
    table = read_manifest(site.data.manifest)
    patient = table.loc[table["split"] == "train", "patient_id"].iloc[0]
    table.loc[table.index[table["split"] == "test"][0], "patient_id"] = patient
    write_manifest(table, site.data.manifest)
    return patient


def test_the_site_summary_refuses_a_patient_in_train_and_test(tmp_path) -> None:
    site_yaml = make_site(tmp_path, "site", n_train=6, n_test=4)
    patient = _leak_a_training_patient_into_test(site_yaml)
    with pytest.raises(PatientOverlapError, match=f"both 'test' and 'train' \\(e.g. {patient}\\)"):
        summarise_site_data(load_site_config(site_yaml))


def test_fit_refuses_before_any_budget_is_spent(tmp_path, global_arrays) -> None:
    site_yaml = make_site(tmp_path, "site", n_train=6, n_test=4)
    _leak_a_training_patient_into_test(site_yaml)
    site = load_site_config(site_yaml)
    with pytest.raises(PatientOverlapError):
        site_trainer_factory(site).fit(global_arrays, _settings(), run_id=1)
    assert SitePrivacyLedger.open(site.state_dir).rounds == []


def test_evaluate_refuses_too(tmp_path, global_arrays) -> None:
    site_yaml = make_site(tmp_path, "site", n_train=6, n_test=4)
    _leak_a_training_patient_into_test(site_yaml)
    with pytest.raises(PatientOverlapError):
        site_trainer_factory(load_site_config(site_yaml)).evaluate(global_arrays, _settings())
