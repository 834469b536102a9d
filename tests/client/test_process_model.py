"""One federated model per process and configuration (`bcvlm_client.process_model`)."""

from __future__ import annotations

from bcvlm_client.process_model import shared_federated_model
from bcvlm_model.model_config import ModelConfig


def test_every_site_of_a_process_gets_the_model_built_once() -> None:
    config = ModelConfig(kind="image_only", dropout=0.0)
    assert shared_federated_model(config, None) is shared_federated_model(
        ModelConfig(kind="image_only", dropout=0.0), None
    )


def test_another_configuration_gets_its_own_model() -> None:
    assert shared_federated_model(ModelConfig(kind="image_only", dropout=0.0), None) is not shared_federated_model(
        ModelConfig(kind="image_only", dropout=0.1), None
    )
