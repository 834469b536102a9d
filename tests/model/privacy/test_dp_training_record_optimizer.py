"""Patient-level DP: the clipped per-patient gradient sum equals one-patient-at-a-time clipped gradients."""

from __future__ import annotations

import warnings

import pytest
import torch
from opacus.grad_sample import GradSampleModule

from bcvlm_model.losses import masked_multitask_bce
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS
from bcvlm_model.privacy.dp_ready import make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.privacy.dp_training import RecordDPOptimizer

TOLERANCE = 1e-3
PATIENT_OF_IMAGE = [0, 0, 1, 2, 2, 2]
"""Three patients with 2, 1 and 3 images: the rows of one batch."""


@pytest.fixture(scope="module")
def dp_vlm(model_factory):
    return make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0)).train()


@pytest.fixture(scope="module")
def batch(eval_collator, make_items) -> dict:
    collated = eval_collator(make_items(len(PATIENT_OF_IMAGE), seed=3))
    collated["image"] = collated["image"][:, :, :64, :32].contiguous()  # stride-32 map 2x1: fast per-patient loop
    return collated


def _inputs(batch: dict, rows: list[int] | slice = slice(None)) -> list[torch.Tensor]:
    return [batch[key][rows] for key in MODEL_INPUT_KEYS]


def _record_optimizer(
    model: torch.nn.Module, clip: float, expected_batch_size: int = 3, grouped: bool = True
) -> RecordDPOptimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return RecordDPOptimizer(
        torch.optim.SGD(params, lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
        grouped=grouped,
    )


def _opacus_per_patient_sum(model: torch.nn.Module, batch: dict, clip: float) -> dict[str, torch.Tensor]:
    """What training does: per-image grad_sample from Opacus, summed per patient, clipped, summed over patients."""
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    optimizer = _record_optimizer(wrapped, clip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            logits = wrapped(*_inputs(batch))
            masked_multitask_bce(logits, batch["labels"], "example_mean").backward()
        optimizer.set_record_index(torch.tensor(PATIENT_OF_IMAGE))
        optimizer.clip_and_accumulate()
        return {name: p.summed_grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    finally:
        optimizer.zero_grad(set_to_none=True)
        wrapped._close()


def _one_patient_at_a_time(model: torch.nn.Module, batch: dict, clip: float) -> dict[str, torch.Tensor]:
    """Reference: each patient's loss (sum over its images) alone, its gradient clipped to `clip`, summed."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    parameters = dict(model.named_parameters())
    total = {name: torch.zeros_like(parameters[name]) for name in names}
    for patient in sorted(set(PATIENT_OF_IMAGE)):
        rows = [row for row, owner in enumerate(PATIENT_OF_IMAGE) if owner == patient]
        model.zero_grad(set_to_none=True)
        masked_multitask_bce(model(*_inputs(batch, rows)), batch["labels"][rows], "example_mean").mul(
            len(rows)
        ).backward()
        grads = {
            name: parameters[name].grad.detach().clone()
            if parameters[name].grad is not None
            else torch.zeros_like(parameters[name])
            for name in names
        }
        norm = torch.sqrt(sum(grad.pow(2).sum() for grad in grads.values()))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for name in names:
            total[name] += factor * grads[name]
    model.zero_grad(set_to_none=True)
    return total


def _max_relative_error(actual: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    worst = 0.0
    for name, expected in reference.items():
        scale = expected.norm().item()
        difference = (actual[name] - expected).norm().item()
        worst = max(worst, difference / scale if scale > 1e-8 else difference)
    return worst


@pytest.mark.parametrize("clip", [1e-3, 1e3], ids=["every-patient-clipped", "no-patient-clipped"])
def test_per_patient_clipped_sum_matches_one_patient_at_a_time(dp_vlm, batch: dict, clip: float) -> None:
    actual = _opacus_per_patient_sum(dp_vlm, batch, clip)
    reference = _one_patient_at_a_time(dp_vlm, batch, clip)
    assert _max_relative_error(actual, reference) < TOLERANCE


def test_clipping_per_image_instead_differs_from_the_per_patient_reference(dp_vlm, batch: dict) -> None:
    """The comparison can fail: the image-level computation of the same batch is not the per-patient one."""
    clip = 1e-3
    wrapped = GradSampleModule(dp_vlm, batch_first=True, loss_reduction="mean")
    optimizer = _record_optimizer(dp_vlm, clip, expected_batch_size=6, grouped=False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            masked_multitask_bce(wrapped(*_inputs(batch)), batch["labels"], "example_mean").backward()
        optimizer.clip_and_accumulate()
        per_image = {name: p.summed_grad.detach().clone() for name, p in dp_vlm.named_parameters() if p.requires_grad}
    finally:
        optimizer.zero_grad(set_to_none=True)
        wrapped._close()
    assert _max_relative_error(per_image, _one_patient_at_a_time(dp_vlm, batch, clip)) > 0.1


def test_a_grouped_optimizer_refuses_a_batch_without_patient_slots(dp_vlm) -> None:
    optimizer = _record_optimizer(dp_vlm, 1.0)
    with pytest.raises(ValueError, match="record_index"):
        optimizer.set_record_index(None)
