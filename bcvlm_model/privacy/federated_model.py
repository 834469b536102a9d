"""The federation's model factory: one model built from the config and made DP-ready, the same at server and sites."""

from __future__ import annotations

from torch import nn

from bcvlm_model.model import build_model
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.privacy.dp_ready import make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig


def build_federated_model(model_cfg: ModelConfig, dp_trainable: DPReadyConfig | None) -> nn.Module:
    """The federation's model: built from the config, made DP-ready (same trainable set at every site and server)."""
    model = build_model(model_cfg)
    if dp_trainable is not None:
        model = make_dp_ready(model, dp_trainable)
    return model
