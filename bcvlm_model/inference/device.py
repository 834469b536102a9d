"""Chooses the inference device (auto = CUDA when present, else CPU) and whether bf16 autocast is used."""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class InferenceDevice:
    """Where the model runs and in which precision."""

    device: torch.device
    bf16: bool

    @property
    def description(self) -> str:
        return f"{self.device.type} ({'bf16 autocast' if self.bf16 else 'fp32'})"


def resolve_device(choice: str = "auto", allow_bf16: bool = True) -> InferenceDevice:
    """`auto`: CUDA with bf16 autocast when a GPU is present, else CPU in fp32. `cuda` without a GPU is an error."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"unknown device '{choice}': expected one of {DEVICE_CHOICES}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available (use --device cpu or auto)")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return InferenceDevice(torch.device("cpu"), bf16=False)
    return InferenceDevice(torch.device("cuda"), bf16=allow_bf16 and torch.cuda.is_bf16_supported())
