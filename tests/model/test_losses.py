"""masked_multitask_bce: equals manual BCE on labelled entries; zero but differentiable when nothing is labelled."""

from __future__ import annotations

import math

import pytest
import torch

from bcvlm_model.losses import masked_multitask_bce

NAN = float("nan")


def _manual_bce(logit: float, label: float) -> float:
    probability = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(probability) + (1 - label) * math.log(1 - probability))


def test_matches_manual_bce_on_labelled_entries() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, 1.1]], requires_grad=True)
    labels = torch.tensor([[1.0, NAN], [0.0, 1.0], [NAN, NAN]])
    entries = [_manual_bce(0.3, 1.0), _manual_bce(2.0, 0.0), _manual_bce(0.5, 1.0)]
    assert masked_multitask_bce(logits, labels).item() == pytest.approx(sum(entries) / 3, rel=1e-6)
    assert masked_multitask_bce(logits, labels, "sum").item() == pytest.approx(sum(entries), rel=1e-6)
    assert masked_multitask_bce(logits, labels, "example_mean").item() == pytest.approx(sum(entries) / 3, rel=1e-6)
    masked_multitask_bce(logits, labels).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[2].abs().sum() == 0 and logits.grad[1, 1] != 0


def test_single_task_site_still_trains() -> None:
    logits = torch.zeros(4, 2, requires_grad=True)
    labels = torch.tensor([[NAN, 1.0], [NAN, 0.0], [NAN, 1.0], [NAN, 1.0]])
    loss = masked_multitask_bce(logits, labels)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert logits.grad[:, 0].abs().sum() == 0 and logits.grad[:, 1].abs().sum() > 0


def test_no_labels_gives_a_zero_loss_that_backpropagates() -> None:
    logits = torch.randn(3, 2, requires_grad=True)
    loss = masked_multitask_bce(logits, torch.full((3, 2), NAN))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 2))


def test_bad_shapes_and_reductions_are_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        masked_multitask_bce(torch.zeros(2, 2), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="reduction"):
        masked_multitask_bce(torch.zeros(2, 2), torch.zeros(2, 2), "median")
