"""The delta bound counts the site's privacy units: training patients by default, images under `unit: image`."""
from __future__ import annotations

import pytest

from bcvlm_client.site_config import SiteConfig
from bcvlm_client.site_data import SiteDataSummary, check_delta_bound
from bcvlm_model.config_io import ConfigError
from bcvlm_model.privacy.privacy_unit import PrivacyUnit

SUMMARY = SiteDataSummary(train_rows=400, train_patients=100, eval_rows=40, eval_patients=10,
                          data_fingerprint="sha256:x")


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
