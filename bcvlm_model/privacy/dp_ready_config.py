"""What trains under DP, as configured (`dp_trainable`); no torch import, so configs load and check cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bcvlm_model.config_io import to_enum


class DPUpdates(StrEnum):
    """Values of `dp_trainable.updates`: which of the federated parameters DP-SGD changes."""

    all = "all"
    norms_biases_head = "norms_biases_head"
    """Every 1-D parameter (biases, LayerNorm scales) and the head, as in DP-BiTFiT (Bu et al., 2022)."""
    head = "head"
    """The head only: a linear probe on the start checkpoint's fused features."""


@dataclass
class DPReadyConfig:
    """What trains under DP (the main speed lever: per-sample conv gradients dominate the cost)."""

    image_trainable_stages: int = 1
    """Last image-backbone stages that train under DP (EfficientNet-Lite0: 1 = the 320-channel stride-32 stage)."""
    text_trainable_layers: int = 0
    """Last text-encoder layers that train under DP (0 = frozen text encoder)."""
    updates: DPUpdates = DPUpdates.all
    """Which projection, co-attention and head parameters a DP-SGD step changes (trainable encoder stages always
    do). The rest still travel with the model, unchanged, so every site holds the start checkpoint's fusion; with
    frozen encoders DP noise then falls on ~2,000 coordinates (norms, biases, head) instead of ~60,000 in the demo."""

    def __post_init__(self) -> None:
        self.updates = to_enum(DPUpdates, self.updates, "dp_trainable.updates")
