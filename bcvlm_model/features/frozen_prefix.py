"""Which prefix of a BreastVLM is frozen (image stages, text encoder), its cache keys, and its outputs per record.

The image prefix is the backbone's stages before the first trainable one: its output (the first trainable stage's
input) and the tapped outputs inside it are what a record's image entry stores. The text prefix is the whole text
encoder when none of it trains: its last hidden state over the report's tokens. Prefix outputs are computed in eval
mode and float32: a frozen encoder's dropout (text encoder) is not applied to cached features, which is the usual
frozen-feature-extraction choice; everything that trains runs exactly as without the cache.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.preprocess_config import PIPELINE_VERSION, PreprocessConfig
from bcvlm_model.features.frozen_cache import weights_fingerprint


@dataclass(frozen=True)
class FrozenPrefixPlan:
    """What of a model's input side is frozen and so cacheable."""

    image_first_trainable: int
    """Index of the first trainable backbone stage (0 = nothing to cache on the image side)."""
    frozen_taps: int
    """Tapped stages inside the frozen image prefix (their outputs are cached alongside the prefix output)."""
    text_cached: bool
    """The text encoder's hidden state is read from the cache: the whole encoder is frozen (and, decided by the
    training hook, the reports are not augmented: augmented renderings almost never repeat)."""

    @property
    def caches_image(self) -> bool:
        return self.image_first_trainable > 0

    @property
    def caches_anything(self) -> bool:
        return self.caches_image or self.text_cached


def plan_frozen_prefix(model: nn.Module, reports_augmented: bool = False) -> FrozenPrefixPlan:
    """The cacheable frozen prefix of a BreastVLM as configured now (call after the DP trainable set is chosen).

    With `reports_augmented` the text side is not cached (its input changes every epoch)."""
    backbone = getattr(model, "image_backbone", None)
    # A wholly frozen backbone (the DP default: only fusion and heads train) caches every stage: the prefix output
    # is the last stage's, and the fusion reads only the cached taps.
    first_trainable = backbone.first_trainable_stage() if backbone is not None else 0
    taps = sum(1 for index in backbone.taps if index < first_trainable) if backbone is not None else 0
    text = getattr(model, "text_encoder", None)
    text_cached = (
        not reports_augmented
        and text is not None
        and not any(parameter.requires_grad for parameter in text.parameters())
    )
    return FrozenPrefixPlan(image_first_trainable=first_trainable, frozen_taps=taps, text_cached=text_cached)


def image_key_payload(model: nn.Module, plan: FrozenPrefixPlan, preprocess: PreprocessConfig) -> dict:
    """What an image entry depends on: frozen stage weights, where the prefix ends, the whole preprocessing."""
    backbone = model.image_backbone
    stages = list(backbone.stages)[: plan.image_first_trainable]
    return {
        "weights": weights_fingerprint(stages),
        "image_encoder": {
            key: value for key, value in config_to_dict(model.cfg.image_encoder).items() if key != "trainable_stages"
        },  # where the prefix ends is recorded below
        "first_trainable_stage": plan.image_first_trainable,
        "taps": list(backbone.taps),
        "preprocess": config_to_dict(preprocess),
        "pipeline_version": PIPELINE_VERSION,
    }


def text_key_payload(model: nn.Module) -> dict:
    """What a text entry depends on besides its token ids (which name the entry): the encoder's weights."""
    return {
        "weights": weights_fingerprint([model.text_encoder]),
        "text_encoder": config_to_dict(model.cfg.text_encoder),
    }


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def image_prefix_outputs(model: nn.Module, images: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per record: [prefix output, frozen tap outputs...] (float32, CPU, no batch dim) for images [B, C, H, W]."""
    backbone = model.image_backbone
    device = _device_of(backbone)
    with _eval_mode(backbone):
        prefix, taps = backbone.forward_frozen(images.to(device, torch.float32))
    outputs = [prefix.float().cpu(), *(tap.float().cpu() for tap in taps)]
    return [[tensor[row] for tensor in outputs] for row in range(images.shape[0])]


def valid_token_count(attention_mask: torch.Tensor) -> torch.Tensor:
    """Tokens per row [B]; the mask must be a prefix of ones (right padding), which cached rows rely on."""
    counts = attention_mask.long().sum(dim=1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None, :]
    if not torch.equal(attention_mask.long(), (positions < counts[:, None]).long()):
        raise ValueError("frozen-feature cache needs right-padded reports (attention_mask a prefix of ones per row)")
    return counts


@torch.no_grad()
def text_prefix_outputs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
    position_ids: torch.Tensor,
) -> list[torch.Tensor]:
    """Per report: the frozen encoder's hidden state over its valid tokens [L_i, hidden] (float32, CPU)."""
    encoder = model.text_encoder
    device = _device_of(encoder)
    counts = valid_token_count(attention_mask)
    with _eval_mode(encoder):
        hidden = encoder(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            token_type_ids=token_type_ids.to(device),
            position_ids=position_ids.to(device),
        ).last_hidden_state
    hidden = hidden.float().cpu()
    return [hidden[row, : int(counts[row])] for row in range(hidden.shape[0])]
