"""DP-ready model: choose what trains under DP, check Opacus compatibility, and verify per-sample gradients."""

from __future__ import annotations

import warnings
from typing import Callable, Mapping

import torch
from torch import nn

from bcvlm_model.encoders.norms import disable_inplace
from bcvlm_model.encoders.text_encoder import set_text_trainable_layers
from bcvlm_model.losses import masked_multitask_bce
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig, DPUpdates


class DPCompatibilityError(ValueError):
    """The model (or its trainable part) cannot be trained correctly with Opacus; the message lists why."""


ENCODER_PREFIXES = ("image_backbone.", "text_encoder.")
"""Parameters `updates` never freezes: encoder stages train by their own counts (and the frozen-feature cache finds
the frozen prefix from requires_grad, so freezing a stage for one call would move it)."""


def parameters_kept_by_dp(model: nn.Module, updates: DPUpdates) -> list[nn.Parameter]:
    """The trainable parameters of `model` that DP-SGD must leave unchanged under `updates` (frozen for the call)."""
    kept = []
    for name, parameter in model.named_parameters():
        changed = (
            updates == DPUpdates.all
            or name.startswith(("head.", *ENCODER_PREFIXES))
            or (updates == DPUpdates.norms_biases_head and parameter.ndim == 1)
        )
        if parameter.requires_grad and not changed:
            kept.append(parameter)
    return kept


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def find_dp_problems(model: nn.Module) -> list[str]:
    """Reasons the model would train wrongly or fail under Opacus (empty list = DP-ready)."""
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator

    problems = [str(error) for error in ModuleValidator.validate(model, strict=False)]
    for name, module in model.named_modules():
        trainable = any(parameter.requires_grad for parameter in module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            problems.append(
                f"{name}: {type(module).__name__} mixes examples in a batch (build the image encoder with "
                "image_encoder.norm 'batch_frozen' or 'group')"
            )
        if getattr(module, "inplace", False) is True:
            problems.append(f"{name}: in-place operation ({type(module).__name__}) breaks Opacus' backward hooks")
        if trainable and type(module) not in GradSampleModule.GRAD_SAMPLERS:
            problems.append(f"{name}: trainable {type(module).__name__} has no Opacus per-sample-gradient rule")
        if isinstance(module, nn.Conv2d) and module.weight.stride() != _contiguous_strides(module.weight.shape):
            problems.append(f"{name}: channels_last conv weights give wrong per-sample gradients under Opacus")
    if getattr(model, "gradient_checkpointing", False):
        problems.append("gradient_checkpointing is on: recomputation re-fires Opacus hooks; turn it off under DP")
    return list(dict.fromkeys(problems))


def make_dp_ready(model: nn.Module, cfg: DPReadyConfig | None = None) -> nn.Module:
    """Set the DP trainable set (image stages, text layers; projections, fusion and head always train), switch
    off in-place ops, and raise DPCompatibilityError if anything Opacus cannot train correctly remains."""
    cfg = cfg if cfg is not None else DPReadyConfig()
    backbone = getattr(model, "image_backbone", None)
    if backbone is not None:
        backbone.set_trainable_stages(cfg.image_trainable_stages)
    text_encoder = getattr(model, "text_encoder", None)
    if text_encoder is not None:
        set_text_trainable_layers(text_encoder, cfg.text_trainable_layers)
    disable_inplace(model)
    problems = find_dp_problems(model)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DPCompatibilityError("model is not DP-ready:\n  " + "\n  ".join(shown))
    return model


def _model_inputs(batch: Mapping[str, torch.Tensor], index: slice | None = None) -> dict[str, torch.Tensor]:
    return {key: (batch[key] if index is None else batch[key][index]) for key in MODEL_INPUT_KEYS}


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sum_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return masked_multitask_bce(logits, labels, reduction="sum")


def per_sample_gradient_error(
    model: nn.Module, batch: Mapping[str, torch.Tensor], loss_fn: LossFn = _sum_loss, force_functorch: bool = False
) -> dict[str, float]:
    """Compare Opacus per-sample gradients with one-example-at-a-time backward passes on `model`.

    `loss_fn` must be a sum over examples. Returns {"max_relative_error", "worst_parameter" index as float,
    "checked_parameters"}; relative error = ||opacus - reference|| / ||reference|| per parameter and example
    (parameters whose reference gradient is ~0 are compared absolutely). Hooks are removed afterwards.
    """
    from opacus.grad_sample import GradSampleModule

    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    if not names:
        raise ValueError("model has no trainable parameters to compare")
    parameters = dict(model.named_parameters())
    batch_size = int(batch["image"].shape[0])
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum", force_functorch=force_functorch)
    try:
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")  # frozen input: expected
            loss_fn(wrapped(**_model_inputs(batch)), batch["labels"]).backward()
        opacus_grads = {}
        for name in names:
            grad_sample = parameters[name].grad_sample
            if grad_sample is None or grad_sample.shape[0] != batch_size:
                raise DPCompatibilityError(
                    f"{name}: Opacus produced no per-sample gradient with batch dim {batch_size}"
                )
            opacus_grads[name] = grad_sample.detach().clone()
    finally:
        wrapped._close()
    worst, worst_name = 0.0, ""
    for example in range(batch_size):
        model.zero_grad(set_to_none=True)
        one = slice(example, example + 1)
        loss_fn(model(**_model_inputs(batch, one)), batch["labels"][one]).backward()
        for name in names:
            reference = parameters[name].grad
            reference = torch.zeros_like(parameters[name]) if reference is None else reference
            difference = (opacus_grads[name][example] - reference).norm().item()
            scale = reference.norm().item()
            error = difference / scale if scale > 1e-8 else difference
            if error > worst:
                worst, worst_name = error, name
    model.zero_grad(set_to_none=True)
    return {"max_relative_error": worst, "worst_parameter": worst_name, "checked_parameters": len(names)}
