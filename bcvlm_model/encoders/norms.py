"""Opacus-compatible replacements for BatchNorm: frozen per-channel affine, or GroupNorm; in-place ops switched off."""

from __future__ import annotations

import copy

import torch
from torch import nn

from bcvlm_model.model_config import ImageNorm


class FrozenBatchNormAct2d(nn.Module):
    """BatchNorm folded into a fixed per-channel affine (buffers, never trained) followed by its activation."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, act: nn.Module | None = None) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.detach().clone().reshape(1, -1, 1, 1))
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x * self.scale + self.shift)


class GroupNormAct2d(nn.Module):
    """Plain nn.GroupNorm (exact type, so Opacus finds its per-sample-gradient rule) followed by an activation."""

    def __init__(self, norm: nn.GroupNorm, act: nn.Module | None = None) -> None:
        super().__init__()
        self.norm = norm
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(x))


def _activation_of(bn: nn.Module) -> nn.Module | None:
    act = getattr(bn, "act", None)
    if act is None or isinstance(act, nn.Identity):
        return None
    return copy.deepcopy(act)


def _groups_for(channels: int, wanted: int) -> int:
    groups = min(wanted, channels)
    while channels % groups:
        groups -= 1
    return groups


def convert_batch_norms(module: nn.Module, mode: ImageNorm, groups: int = 8) -> int:
    """Replace every BatchNorm2d (timm BatchNormAct2d included) in place; returns how many were replaced.

    mode "batch_frozen": y = act(x * gamma/sqrt(var+eps) + (beta - mean*gamma/sqrt(var+eps))) — identical to the
    BatchNorm in eval mode. mode "group": GroupNorm initialised with the BatchNorm's affine (trainable).
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            act = _activation_of(child)
            weight = child.weight.detach() if child.weight is not None else torch.ones(child.num_features)
            bias = child.bias.detach() if child.bias is not None else torch.zeros(child.num_features)
            if mode == ImageNorm.batch_frozen:
                inv_std = torch.rsqrt(child.running_var.detach().float() + child.eps)
                scale = weight.float() * inv_std
                new: nn.Module = FrozenBatchNormAct2d(scale, bias.float() - child.running_mean.float() * scale, act)
            else:
                norm = nn.GroupNorm(_groups_for(child.num_features, groups), child.num_features, eps=child.eps)
                with torch.no_grad():
                    norm.weight.copy_(weight)
                    norm.bias.copy_(bias)
                new = GroupNormAct2d(norm, act)
            setattr(module, name, new)
            replaced += 1
        else:
            replaced += convert_batch_norms(child, mode, groups)
    return replaced


def disable_inplace(module: nn.Module) -> int:
    """Set `inplace=False` on every submodule that has the flag (activations, dropout); returns how many changed."""
    changed = 0
    for sub in module.modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
            changed += 1
    return changed
