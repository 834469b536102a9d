"""FrozenFeatureModel: same parameters as the model, same logits and same Opacus per-sample gradients from the cache."""

from __future__ import annotations

import warnings

import torch

from bcvlm_model.features.cached_batches import FrozenFeatureCollator
from bcvlm_model.features.cached_model import FrozenFeatureModel
from bcvlm_model.features.frozen_cache import FrozenFeatureStore
from bcvlm_model.features.frozen_prefix import plan_frozen_prefix
from bcvlm_model.losses import masked_multitask_bce
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS
from bcvlm_model.parameters import federated_parameter_names
from bcvlm_model.privacy.dp_ready import make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator import ReportCollator

HEIGHT, WIDTH = 128, 64  # the model tests' tiny image size (conftest.case_items)


def _setup(model_factory, make_items, tmp_path):
    model = make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0))
    plan = plan_frozen_prefix(model)
    items = make_items(4)
    plain_batch = ReportCollator(TextConfig())(items)
    collator = FrozenFeatureCollator(
        ReportCollator(TextConfig()),
        model,
        plan,
        FrozenFeatureStore.open(tmp_path, "image", {"w": 1}, "float32"),
        FrozenFeatureStore.open(tmp_path, "text", {"w": 1}, "float32"),
    )
    cached = FrozenFeatureModel(model, plan, (HEIGHT, WIDTH))
    return model, cached, plain_batch, collator(items)


def test_parameters_are_the_models_own_with_the_same_names(model_factory, make_items, tmp_path) -> None:
    model, cached, _, _ = _setup(model_factory, make_items, tmp_path)
    assert federated_parameter_names(cached) == federated_parameter_names(model)
    assert all(a is b for a, b in zip(cached.parameters(), model.parameters()))


def test_logits_match_the_plain_forward(model_factory, make_items, tmp_path) -> None:
    model, cached, plain_batch, cached_batch = _setup(model_factory, make_items, tmp_path)
    model.eval()
    with torch.no_grad():
        plain = model(*(plain_batch[key] for key in MODEL_INPUT_KEYS))
        from_cache = cached(*(cached_batch[key] for key in cached.input_keys))
    assert torch.allclose(plain, from_cache, atol=1e-5)


def _grad_samples(module: torch.nn.Module, inputs, labels) -> list[torch.Tensor]:
    from opacus.grad_sample import GradSampleModule

    wrapped = GradSampleModule(module, batch_first=True, loss_reduction="sum")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            masked_multitask_bce(wrapped(*inputs), labels, reduction="sum").backward()
        return [p.grad_sample.detach().clone() for p in module.parameters() if p.requires_grad]
    finally:
        wrapped._close()
        module.zero_grad(set_to_none=True)


def test_opacus_per_sample_gradients_match_the_plain_model(model_factory, make_items, tmp_path) -> None:
    model, cached, plain_batch, cached_batch = _setup(model_factory, make_items, tmp_path)
    model.train()
    plain = _grad_samples(model, [plain_batch[key] for key in MODEL_INPUT_KEYS], plain_batch["labels"])
    from_cache = _grad_samples(cached, [cached_batch[key] for key in cached.input_keys], cached_batch["labels"])
    assert len(plain) == len(from_cache) > 0
    worst = max(float((a - b).norm() / b.norm().clamp_min(1e-8)) for a, b in zip(plain, from_cache))
    assert worst < 1e-4
