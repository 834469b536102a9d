"""train_local / evaluate on the real tiny VLM: learning, FedProx under DP (exact), accounting, NaN labels."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader

from bcvlm_model.parameters import federated_parameter_names
from bcvlm_model.privacy.dp_ready import ENCODER_PREFIXES, make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig, DPUpdates
from bcvlm_model.privacy.dp_training import DPTrainState
from bcvlm_model.training.local_train_config import LocalTrainConfig
from bcvlm_model.training.loops import evaluate, train_local
from bcvlm_testing.blob_records import BlobRecords

HEIGHT, WIDTH = 64, 32


@pytest.fixture(scope="module")
def loader(eval_collator) -> DataLoader:
    return DataLoader(
        BlobRecords(12, HEIGHT, WIDTH, contrast=2.0, noise=0.3, calcification_every=3),
        batch_size=4,
        shuffle=False,
        collate_fn=eval_collator,
    )


@pytest.fixture(scope="module")
def dp_model(model_factory) -> torch.nn.Module:
    return make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0))


def test_loss_decreases_on_a_learnable_task(model_factory, loader) -> None:
    model = model_factory("vlm")
    before = evaluate(model, loader).mean_loss
    result = train_local(model, loader, LocalTrainConfig(local_steps=6, learning_rate=3e-3))
    after = evaluate(model, loader).mean_loss
    assert result.steps == 6 and result.num_examples == 24 and result.epsilon_spent_total is None
    assert after < before - 0.05, (before, after)


def test_evaluate_keeps_only_labelled_entries_per_task(model_factory, loader) -> None:
    result = evaluate(model_factory("vlm"), loader)
    assert result.num_examples == 12
    assert result.scores["malignancy"].shape == (12,) and result.labels["malignancy"].shape == (12,)
    assert result.scores["calcification"].shape == (4,)
    assert not torch.isnan(torch.from_numpy(result.labels["calcification"])).any()
    assert ((result.scores["malignancy"] >= 0) & (result.scores["malignancy"] <= 1)).all()


@pytest.mark.parametrize("use_dp", [True, False], ids=["dp", "no-dp"])
def test_proximal_gradient_matches_manual_computation(dp_model, loader, use_dp: bool) -> None:
    """One SGD step with mu > 0 differs from mu = 0 by exactly -lr * mu * (w - w_global) (same noise, same batch)."""
    lr, mu = 0.1, 0.5
    cfg = LocalTrainConfig(local_steps=1, optimizer="sgd", momentum=0.0, learning_rate=lr)
    start = copy.deepcopy(dp_model)
    offset = {name: torch.full_like(p, 0.01) for name, p in start.named_parameters() if p.requires_grad}
    global_state = {name: p.detach() - offset[name] for name, p in start.named_parameters() if p.requires_grad}
    dp = (
        (lambda: DPTrainState(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, insecure_seed=3))
        if use_dp
        else (lambda: None)
    )
    without, with_prox = copy.deepcopy(start), copy.deepcopy(start)
    train_local(without, loader, cfg, dp=dp(), proximal_mu=0.0, seed=3)
    train_local(with_prox, loader, cfg, dp=dp(), proximal_mu=mu, global_state=global_state, seed=3)
    trained = dict(without.named_parameters())
    for name, parameter in with_prox.named_parameters():
        if name in offset:
            expected = -lr * mu * offset[name]
            torch.testing.assert_close(parameter.detach() - trained[name].detach(), expected, atol=2e-6, rtol=1e-4)
    moved = sum(float((p.detach() - q.detach()).abs().sum()) for p, q in zip(without.parameters(), start.parameters()))
    assert moved > 0


def test_dp_accountant_continues_across_calls_and_hooks_are_removed(dp_model, loader) -> None:
    model = copy.deepcopy(dp_model)
    cfg = LocalTrainConfig(local_steps=2, learning_rate=1e-3)
    first = train_local(model, loader, cfg, dp=DPTrainState(1.0, 1.0, 1e-5))
    second = train_local(model, loader, cfg, dp=DPTrainState(1.0, 1.0, 1e-5, accountant_state=first.accountant_state))
    assert 0 < first.epsilon_spent_total < second.epsilon_spent_total
    assert sum(entry[2] for entry in second.accountant_state["history"]) == 4
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    assert all(len(module._forward_hooks) == 0 for module in model.modules())
    assert math.isfinite(first.mean_loss)


def test_fedprox_needs_the_global_state(model_factory, loader) -> None:
    with pytest.raises(ValueError, match="global_state"):
        train_local(model_factory("vlm"), loader, LocalTrainConfig(local_steps=1), proximal_mu=0.1)


@pytest.mark.parametrize("updates", [DPUpdates.head, DPUpdates.norms_biases_head])
def test_dp_steps_change_only_the_parameters_updates_names(dp_model, loader, updates: DPUpdates) -> None:
    model = copy.deepcopy(dp_model)
    names_before = federated_parameter_names(model)
    start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    cfg = LocalTrainConfig(local_steps=2, optimizer="sgd", learning_rate=0.1)
    train_local(model, loader, cfg, dp=DPTrainState(1.0, 1.0, 1e-5, updates=updates))
    assert federated_parameter_names(model) == names_before  # the kept parameters still travel
    changed = {
        name
        for name, p in model.named_parameters()
        if name in start and not name.startswith(ENCODER_PREFIXES) and not torch.equal(p, start[name])
    }  # the fusion and head (the trainable image stage always changes)
    allowed = {
        name
        for name, p in model.named_parameters()
        if name.startswith("head.") or (updates == DPUpdates.norms_biases_head and p.ndim == 1)
    }
    assert changed and changed <= allowed
    assert any(not name.startswith("head.") for name in changed) == (updates == DPUpdates.norms_biases_head)
