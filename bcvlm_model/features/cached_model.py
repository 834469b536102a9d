"""FrozenFeatureModel: the trainable rest of a BreastVLM, fed the cached outputs of its frozen prefix.

It registers the BreastVLM's own child modules under the same names and in the same order, so it has exactly the
model's parameters (same objects, same names, same federated order): Opacus hooks, the optimizer, FedProx pairs and
`get_trainable_state` see one model. Its forward takes the batch keys listed in `input_keys` (a training loop calls
`module(*(batch[key] for key in module.input_keys))`); every key is batch-first, so per-sample gradients are those
of the plain model.
"""

from __future__ import annotations

import torch
from torch import nn

from bcvlm_model.features.frozen_prefix import FrozenPrefixPlan
from bcvlm_model.model_inputs import IMAGE_INPUT_KEYS, TEXT_INPUT_KEYS

FROZEN_IMAGE_KEY = "frozen_image"
"""Batch key of the image prefix's output [B, C, h, w] (the first trainable stage's input)."""
TEXT_HIDDEN_KEY = "text_hidden"
"""Batch key of the frozen text encoder's hidden state [B, T, hidden] (zeros at padded positions)."""


def frozen_tap_key(index: int) -> str:
    """Batch key of the `index`-th tapped stage output inside the frozen image prefix."""
    return f"frozen_tap_{index}"


def input_keys_for(plan: FrozenPrefixPlan, uses_image: bool, uses_text: bool) -> tuple[str, ...]:
    """The batch keys a FrozenFeatureModel with `plan` reads, in forward-argument order."""
    keys: list[str] = []
    if uses_image:
        keys += (
            [FROZEN_IMAGE_KEY, *(frozen_tap_key(i) for i in range(plan.frozen_taps))]
            if plan.caches_image
            else list(IMAGE_INPUT_KEYS)
        )
    if uses_text:
        keys += [TEXT_HIDDEN_KEY, "attention_mask"] if plan.text_cached else list(TEXT_INPUT_KEYS)
    return tuple(keys)


class FrozenFeatureModel(nn.Module):
    """Forward of a BreastVLM from cached frozen-prefix outputs (and plain inputs for any part not cached)."""

    def __init__(self, model: nn.Module, plan: FrozenPrefixPlan, image_size: tuple[int, int]) -> None:
        super().__init__()
        if not plan.caches_anything:
            raise ValueError("nothing of this model is frozen: there is no prefix to train from a cache")
        for name, child in model.named_children():  # same names, same order: same parameters as the model
            self.add_module(name, child)
        object.__setattr__(self, "_vlm", model)  # not a submodule: its children are already registered above
        self.plan = plan
        self.image_size = tuple(image_size)
        self.input_keys = input_keys_for(plan, model.uses_image, model.uses_text)

    @property
    def vlm(self) -> nn.Module:
        """The BreastVLM whose modules this model shares."""
        return self._vlm

    @property
    def gradient_checkpointing(self) -> bool:
        return bool(self._vlm.gradient_checkpointing)

    def train(self, mode: bool = True) -> "FrozenFeatureModel":
        super().train(mode)
        self._vlm.training = mode  # the BreastVLM's own flag (children are shared and already switched)
        return self

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_keys):
            raise TypeError(
                f"FrozenFeatureModel takes {len(self.input_keys)} inputs {self.input_keys}, got {len(inputs)}"
            )
        named = dict(zip(self.input_keys, inputs))
        vlm = self._vlm
        text_hidden = text_mask = None
        if vlm.uses_text:
            text_mask = named["attention_mask"]
            text_hidden = (
                named[TEXT_HIDDEN_KEY]
                if self.plan.text_cached
                else vlm.text_encoder_hidden(
                    named["input_ids"], text_mask, named["token_type_ids"], named["position_ids"]
                )
            )
        feature_maps = None
        if vlm.uses_image:
            if self.plan.caches_image:
                taps = [named[frozen_tap_key(i)] for i in range(self.plan.frozen_taps)]
                feature_maps = vlm.image_backbone.forward_trainable(named[FROZEN_IMAGE_KEY], taps, self.image_size)
            else:
                feature_maps = vlm.image_backbone(named["image"])
        return vlm.fuse(feature_maps, text_hidden, text_mask)
