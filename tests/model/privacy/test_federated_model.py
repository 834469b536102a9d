"""build_federated_model: the config's model as is, or with the DP trainable set applied and checked."""

from __future__ import annotations

from torch import nn

from bcvlm_model.model import build_model
from bcvlm_model.privacy.dp_ready import find_dp_problems
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.privacy.federated_model import build_federated_model
from bcvlm_testing.federation_sites import tiny_model_config


def _trainable_names(model: nn.Module) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def test_without_a_dp_trainable_set_the_model_config_decides_what_trains() -> None:
    cfg = tiny_model_config()
    assert _trainable_names(build_federated_model(cfg, None)) == _trainable_names(build_model(cfg))


def test_the_dp_trainable_set_replaces_the_model_configs_and_passes_the_dp_check() -> None:
    cfg = tiny_model_config()  # its text encoder is frozen (trainable_layers=0)
    model = build_federated_model(cfg, DPReadyConfig(image_trainable_stages=1, text_trainable_layers=1))
    names = _trainable_names(model)
    assert any(name.startswith("text_encoder.encoder.layer.0") for name in names)
    assert find_dp_problems(model) == []
