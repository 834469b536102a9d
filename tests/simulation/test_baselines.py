"""The baselines train exactly the parameters the federated model trains, with DP only when asked."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from bcvlm_client.run_settings import build_federated_model
from bcvlm_model.privacy.dp_ready import DPReadyConfig
from bcvlm_simulation.baselines import _model, recipe_from_config
from bcvlm_simulation.config import load_simulation_config


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_baselines_train_the_federated_trainable_set() -> None:
    cfg = load_simulation_config("tiny", ["server.dp_trainable.image_trainable_stages=0"])
    recipe = recipe_from_config(cfg, cache_dir=None)
    assert recipe.dp_ready == DPReadyConfig(image_trainable_stages=0, text_trainable_layers=0)
    federated = _trainable(build_federated_model(cfg.server.model, cfg.server.dp_trainable))
    baseline = _trainable(_model(cfg.server.model, recipe))
    assert baseline == federated
    assert not any(name.startswith("image_backbone.") for name in baseline)
    # A different DP trainable set reaches the baselines too (the default trains the last image stage).
    wider = recipe_from_config(load_simulation_config("tiny"), cache_dir=None)
    assert any(name.startswith("image_backbone.") for name in _trainable(_model(cfg.server.model, wider)))


def test_baselines_are_private_only_when_asked() -> None:
    cfg = load_simulation_config("tiny")
    assert recipe_from_config(cfg, None).privacy is None
    private = load_simulation_config("tiny", ["baselines.private=true"])
    assert recipe_from_config(private, None).privacy == private.site.privacy
    no_dp_model = replace(cfg, server=replace(cfg.server, dp_model=False))
    assert recipe_from_config(no_dp_model, None).dp_ready is None
