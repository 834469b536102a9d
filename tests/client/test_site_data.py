"""Site data checks: no patient in two splits (check, fit, evaluate refuse), and the delta bound counts the
site's privacy units (training patients by default, images under `unit: image`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.run_settings import RoundSettings
from bcvlm_client.site_config import SiteConfig, load_site_config
from bcvlm_client.site_data import SiteDataSummary, check_delta_bound, summarise_site_data
from bcvlm_model.config_io import ConfigError
from bcvlm_model.data.manifest import read_manifest, write_manifest
from bcvlm_model.data.split_guard import PatientOverlapError
from bcvlm_model.privacy.privacy_unit import PrivacyUnit
from bcvlm_testing.federation_sites import (
    make_site,
    site_trainer_factory,
    tiny_global_arrays,
    tiny_round_config,
)


def _settings() -> RoundSettings:
    return RoundSettings.from_config(tiny_round_config(planned_rounds=1, local_steps=1))


@pytest.fixture(scope="module")
def global_arrays() -> list[np.ndarray]:
    return tiny_global_arrays()


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


SUMMARY = SiteDataSummary(
    train_rows=400, train_patients=100, eval_rows=40, eval_patients=10, data_fingerprint="sha256:x"
)


def _site(delta: float, unit: PrivacyUnit = PrivacyUnit.patient) -> SiteConfig:
    site = SiteConfig(site_id="a", state_dir="/tmp/unused", insecure=True)
    site.privacy.delta, site.privacy.unit = delta, unit
    return site


def test_delta_is_bounded_by_the_number_of_training_patients() -> None:
    check_delta_bound(_site(1e-3), SUMMARY)  # 1 / (10 x 100 patients)
    with pytest.raises(ConfigError, match=r"privacy.delta.*100 training patients"):
        check_delta_bound(_site(2e-3), SUMMARY)


def test_under_the_image_unit_delta_is_bounded_by_the_number_of_images() -> None:
    check_delta_bound(_site(2.5e-4, PrivacyUnit.image), SUMMARY)  # 1 / (10 x 400 images)
    with pytest.raises(ConfigError, match=r"400 training images"):
        check_delta_bound(_site(1e-3, PrivacyUnit.image), SUMMARY)


def test_a_manifest_without_validation_rows_gets_a_patient_level_validation_split(tmp_path) -> None:
    summary = summarise_site_data(load_site_config(make_site(tmp_path, "site", n_train=20, n_test=4, val_fraction=0.2)))
    assert (summary.train_patients, summary.val_patients) == (16, 4)  # 20% of 10 positive and of 10 negative
    assert summary.train_rows + summary.val_rows == 20


def test_the_default_validation_split_is_the_same_on_every_read(tmp_path) -> None:
    site = load_site_config(make_site(tmp_path, "site", n_train=20, n_test=4))
    fingerprints = {summarise_site_data(site).data_fingerprint for _ in range(3)}
    assert len(fingerprints) == 1  # the ledger's training set stays the same between rounds


def test_a_validation_fraction_of_zero_keeps_every_training_patient(tmp_path) -> None:
    summary = summarise_site_data(load_site_config(make_site(tmp_path, "site", n_train=20, n_test=4, val_fraction=0.0)))
    assert (summary.train_rows, summary.val_rows) == (20, 0)
