"""DP-ready model: Opacus per-sample gradients equal one-example-at-a-time gradients; known-bad setups are caught."""

from __future__ import annotations

import pytest
import timm
import torch

from bcvlm_model.config_io import ConfigError
from bcvlm_model.privacy.dp_ready import (
    DPCompatibilityError,
    find_dp_problems,
    make_dp_ready,
    per_sample_gradient_error,
)
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig

TOLERANCE = 1e-3


def _small(batch: dict, count: int) -> dict:
    """First `count` examples at 64x32 (stride-32 map 2x1) to keep the per-example loop fast."""
    small = {key: value[:count] for key, value in batch.items()}
    small["image"] = small["image"][:, :, :64, :32].contiguous()
    return small


@pytest.fixture(scope="module")
def dp_vlm(model_factory):
    model = make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=1))
    return model.train()


def test_dp_ready_vlm_matches_one_example_at_a_time(dp_vlm, tiny_batch: dict) -> None:
    names = [n for n, p in dp_vlm.named_parameters() if p.requires_grad]
    assert any(n.startswith("text_encoder.encoder.layer.0") for n in names)
    assert any(n.startswith("image_backbone.stages.7") for n in names)
    report = per_sample_gradient_error(dp_vlm, _small(tiny_batch, 3))
    assert report["checked_parameters"] == len(names)
    assert report["max_relative_error"] < TOLERANCE, report


def test_channels_last_is_caught_by_the_same_comparison(dp_vlm, tiny_batch: dict) -> None:
    import copy

    bad = copy.deepcopy(dp_vlm).to(memory_format=torch.channels_last)
    assert any("channels_last" in problem for problem in find_dp_problems(bad))
    report = per_sample_gradient_error(bad, _small(tiny_batch, 2))
    assert report["max_relative_error"] > TOLERANCE, report


def test_timm_batchnorm_and_inplace_model_is_refused() -> None:
    raw = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    problems = find_dp_problems(raw)
    assert any("in-place" in problem for problem in problems)
    assert any("BatchNormAct2d" in problem or "BatchNorm" in problem for problem in problems)
    with pytest.raises(DPCompatibilityError, match="BatchNorm"):
        make_dp_ready(raw)


def test_gradient_checkpointing_is_refused_under_dp(model_factory) -> None:
    model = model_factory("image_only")
    model.set_gradient_checkpointing(True)
    with pytest.raises(DPCompatibilityError, match="gradient_checkpointing"):
        make_dp_ready(model)


def test_an_unknown_dp_update_set_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="dp_trainable.updates"):
        DPReadyConfig(updates="fusion")
