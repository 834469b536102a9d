"""The trainable parameters that travel in federation: stable names, state extraction and loading."""

from __future__ import annotations

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The user model inside Opacus' GradSampleModule (or DDP) wrappers, so names never carry `_module.`."""
    while hasattr(model, "_module") and isinstance(model._module, nn.Module):
        model = model._module
    while (
        hasattr(model, "module")
        and isinstance(getattr(model, "module"), nn.Module)
        and type(model).__name__ in ("DistributedDataParallel", "DataParallel")
    ):
        model = model.module
    return model


def federated_parameter_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters in registration order (the order federated updates use)."""
    return [name for name, parameter in _unwrap(model).named_parameters() if parameter.requires_grad]


def federated_parameter_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    """Shapes of the trainable parameters, in `federated_parameter_names` order (what a packed model unpacks to)."""
    parameters = dict(_unwrap(model).named_parameters())
    return [tuple(parameters[name].shape) for name in federated_parameter_names(model)]


def get_trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the trainable parameters, keyed and ordered as `federated_parameter_names`."""
    parameters = dict(_unwrap(model).named_parameters())
    return {name: parameters[name].detach().cpu().clone() for name in federated_parameter_names(model)}


def set_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into the trainable parameters; the key set and every shape must match exactly."""
    expected = federated_parameter_names(model)
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in set(expected)]
    if missing or unexpected:
        raise KeyError(
            f"trainable state does not match the model: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    parameters = dict(_unwrap(model).named_parameters())
    with torch.no_grad():
        for name in expected:
            value = torch.as_tensor(state[name])
            if tuple(value.shape) != tuple(parameters[name].shape):
                raise ValueError(
                    f"trainable parameter {name}: shape {tuple(value.shape)} != {tuple(parameters[name].shape)}"
                )
            parameters[name].copy_(value.to(parameters[name].device, parameters[name].dtype))
