"""One federated model per process and model configuration, shared by every site the process serves.

A simulation's Ray worker serves many virtual sites, one message at a time; building the model once per site cost
seconds each and kept one copy per site in memory. Sharing is sound because the federation already relies on every
copy being identical outside the trainable state: the server sends only the trainable arrays, and a site sets them
before every fit and evaluation (`SiteTrainer`); the frozen part is the same pretrained weights everywhere, and no
BatchNorm statistics train (`bcvlm_model.privacy.dp_ready`).
"""

from __future__ import annotations

from torch import nn

from bcvlm_model.model_config import ModelConfig
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.privacy.federated_model import build_federated_model

_MODELS: dict[str, nn.Module] = {}


def shared_federated_model(model_cfg: ModelConfig, dp_trainable: DPReadyConfig | None) -> nn.Module:
    """The process's model for this configuration, built on first use (`build_federated_model`)."""
    key = repr((model_cfg, dp_trainable))
    if key not in _MODELS:
        _MODELS[key] = build_federated_model(model_cfg, dp_trainable)
    return _MODELS[key]
