"""plan_frozen_prefix and the cache keys: what is frozen, and which changes invalidate cached entries."""

from __future__ import annotations

from dataclasses import replace

import torch

from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.features.frozen_prefix import image_key_payload, plan_frozen_prefix, text_key_payload
from bcvlm_model.privacy.dp_ready import make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig

PREPROCESS = PreprocessConfig(image_height=64, image_width=32)


def test_dp_model_freezes_all_but_the_last_stage_and_the_text_encoder(model_factory) -> None:
    model = make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0))
    plan = plan_frozen_prefix(model)
    stages = len(model.image_backbone.stages)
    assert (plan.image_first_trainable, plan.frozen_taps, plan.text_cached) == (stages - 1, 1, True)


def test_trainable_text_layer_is_not_cached(model_factory) -> None:
    model = make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=1))
    assert plan_frozen_prefix(model).text_cached is False


def test_image_key_changes_with_a_frozen_weight(model_factory) -> None:
    model = model_factory("vlm")
    plan = plan_frozen_prefix(model)
    before = image_key_payload(model, plan, PREPROCESS)
    with torch.no_grad():
        next(model.image_backbone.stages[0].parameters()).add_(1e-3)
    assert image_key_payload(model, plan, PREPROCESS) != before


def test_image_key_ignores_a_trainable_weight(model_factory) -> None:
    model = model_factory("vlm")
    plan = plan_frozen_prefix(model)
    before = image_key_payload(model, plan, PREPROCESS)
    with torch.no_grad():
        next(model.image_backbone.stages[-1].parameters()).add_(1e-3)
    assert image_key_payload(model, plan, PREPROCESS) == before


def test_image_key_changes_with_preprocessing(model_factory) -> None:
    model = model_factory("vlm")
    plan = plan_frozen_prefix(model)
    assert image_key_payload(model, plan, PREPROCESS) != image_key_payload(
        model, plan, replace(PREPROCESS, intensity_mean=0.4)
    )


def test_text_key_changes_with_the_text_encoder_weights(model_factory) -> None:
    model = model_factory("vlm")
    before = text_key_payload(model)
    with torch.no_grad():
        next(model.text_encoder.parameters()).add_(1e-3)
    assert text_key_payload(model) != before
