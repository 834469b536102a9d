"""Image backbone: a timm EfficientNet-family ConvNet or ViT cut into stages, single-channel, with tapped feature maps."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from bcvlm_model.encoders.image_weights import load_pretrained_into
from bcvlm_model.encoders.norms import convert_batch_norms, disable_inplace
from bcvlm_model.model_config import RANDOM_INIT, ImageEncoderConfig


def is_vit_name(name: str) -> bool:
    """True for timm Vision Transformer names (built at the input resolution with dynamic image size)."""
    return name.startswith(("vit_", "deit_", "eva02_"))


def create_timm_image_model(cfg: ImageEncoderConfig, pretrained: bool = True, num_classes: int = 1000) -> nn.Module:
    """The full 3-channel timm model (classifier included) with `cfg.weights` loaded — before any adaptation."""
    import timm

    kwargs = {}
    if is_vit_name(cfg.name):
        # The position grid is the architecture's own, resampled to the input's grid on every forward: the input
        # size is the preprocessing's alone (PreprocessConfig.image_height/width), never a second model setting.
        kwargs = {"dynamic_img_size": True}
    try:
        model = timm.create_model(cfg.name, pretrained=False, in_chans=3, num_classes=num_classes, **kwargs)
    except RuntimeError as exc:
        raise ValueError(f"model.image_encoder.name={cfg.name!r} is not a timm architecture: {exc}") from exc
    if pretrained and cfg.weights != RANDOM_INIT:
        load_pretrained_into(model, cfg.name, cfg.weights)
    return model


def adapt_input_channels(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of the pretrained RGB first conv taking `in_chans` channels (1: sum of the channel weights)."""
    if conv.in_channels == in_chans:
        return conv
    from timm.models._manipulate import adapt_input_conv

    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    new.__class__ = conv.__class__  # keep timm's Conv2dSame ('same' padding) behaviour
    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(in_chans, conv.weight.detach()))
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    return new


class ViTEmbedding(nn.Module):
    """ViT stage 0: patch embedding, class/position embeddings (interpolated to the input size), pre-norm."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vit.patch_embed(x)
        x = self.vit._pos_embed(x)
        x = self.vit.patch_drop(x)
        return self.vit.norm_pre(x)


class ImageBackbone(nn.Module):
    """Runs the backbone stage by stage and returns the tapped stages' feature maps [B, C_s, h_s, w_s] (NCHW).

    Stages before the first trainable one run under no_grad (no activations kept for backward).
    """

    def __init__(
        self,
        stages: list[nn.Module],
        taps: list[int],
        channels: list[int],
        strides: list[int],
        prefix_tokens: int = 0,
        patch_size: int = 0,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.taps = taps
        self.tap_channels = channels
        self.tap_strides = strides
        self.prefix_tokens = prefix_tokens
        self.patch_size = patch_size
        self.gradient_checkpointing = False

    def set_trainable_stages(self, trainable_stages: int) -> None:
        """Train the last `trainable_stages` stages (-1 = all, 0 = none); the rest is frozen."""
        count = len(self.stages) if trainable_stages < 0 else min(trainable_stages, len(self.stages))
        for index, stage in enumerate(self.stages):
            for parameter in stage.parameters():
                parameter.requires_grad_(index >= len(self.stages) - count)

    def first_trainable_stage(self) -> int:
        for index, stage in enumerate(self.stages):
            if any(parameter.requires_grad for parameter in stage.parameters()):
                return index
        return len(self.stages)

    def _as_map(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if not self.patch_size:
            return x
        tokens = x[:, self.prefix_tokens :]
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        return tokens.reshape(tokens.shape[0], grid_h, grid_w, tokens.shape[-1]).permute(0, 3, 1, 2).contiguous()

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.dim() != 4:
            raise ValueError(f"image must be [B, C, H, W], got shape {tuple(image.shape)}")
        x = image.contiguous(memory_format=torch.contiguous_format)
        height, width = x.shape[-2:]
        x, frozen_taps = self.forward_frozen(x)
        return self.forward_trainable(x, frozen_taps, (height, width))

    def forward_frozen(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the frozen stages under no_grad: (their last output, the raw outputs of the frozen tapped stages).

        The first element is the input of the first trainable stage (the image itself when stage 0 trains); this
        is what a frozen-feature cache stores, so it is returned before `_as_map` (ViT tokens stay tokens)."""
        x = image.contiguous(memory_format=torch.contiguous_format)
        frozen_taps: list[torch.Tensor] = []
        with torch.no_grad():
            for index in range(self.first_trainable_stage()):
                x = self.stages[index](x)
                if index in self.taps:
                    frozen_taps.append(x)
        return x, frozen_taps

    def forward_trainable(
        self, x: torch.Tensor, frozen_taps: list[torch.Tensor], image_size: tuple[int, int]
    ) -> list[torch.Tensor]:
        """Run the trainable stages from the frozen prefix's output `x`; returns every tapped feature map.

        `image_size` is the (H, W) of the original image (ViT token maps are reshaped with it)."""
        height, width = image_size
        first_trainable = self.first_trainable_stage()
        features = [self._as_map(tap, height, width) for tap in frozen_taps]
        x = x.contiguous(memory_format=torch.contiguous_format)  # never channels-last under DP (Opacus pitfall 3)
        for index in range(first_trainable, len(self.stages)):
            stage = self.stages[index]
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            if index in self.taps:
                features.append(self._as_map(x, height, width))
        return features


def _resolve_taps(feature_info: list[dict], wanted: list[int]) -> list[dict]:
    try:
        chosen = [feature_info[index] for index in wanted]
    except IndexError as exc:
        raise ValueError(f"model.image_encoder.feature_stages={wanted}: backbone has {len(feature_info)} taps") from exc
    return sorted({info["module"]: info for info in chosen}.values(), key=lambda info: feature_info.index(info))


def build_image_backbone(cfg: ImageEncoderConfig, pretrained: bool = True) -> ImageBackbone:
    """Build the configured backbone: weights loaded, first conv adapted to `in_chans`, BatchNorm converted
    (cfg.norm), in-place ops off, cut after the last tapped stage, last `trainable_stages` stages trainable."""
    model = create_timm_image_model(cfg, pretrained=pretrained)
    feature_info = list(model.feature_info)
    taps = _resolve_taps(feature_info, list(cfg.feature_stages))
    if is_vit_name(cfg.name):
        model.patch_embed.proj = adapt_input_channels(model.patch_embed.proj, cfg.in_chans)
        blocks = list(model.blocks)
        model.blocks = nn.Identity()
        model.norm, model.head = nn.Identity(), nn.Identity()
        stages: list[nn.Module] = [ViTEmbedding(model), *blocks]
        stage_of = {f"blocks.{index}": index + 1 for index in range(len(blocks))}
        patch = model.patch_embed.patch_size[0]
        prefix = model.num_prefix_tokens
    elif hasattr(model, "conv_stem") and hasattr(model, "blocks"):
        model.conv_stem = adapt_input_channels(model.conv_stem, cfg.in_chans)
        convert_batch_norms(model, cfg.norm, cfg.group_norm_groups)
        stages = [nn.Sequential(model.conv_stem, model.bn1), *model.blocks]
        stage_of = {f"blocks.{index}": index + 1 for index in range(len(model.blocks))}
        patch, prefix = 0, 0
    else:
        raise ValueError(
            f"model.image_encoder.name={cfg.name!r}: supported families are timm EfficientNet/MobileNet "
            "(conv_stem + blocks) and ViT"
        )
    tap_indices = [stage_of[info["module"]] for info in taps]
    backbone = ImageBackbone(
        stages[: tap_indices[-1] + 1],
        tap_indices,
        [int(info["num_chs"]) for info in taps],
        [int(info["reduction"]) for info in taps],
        prefix_tokens=prefix,
        patch_size=patch,
    )
    disable_inplace(backbone)
    backbone.set_trainable_stages(cfg.trainable_stages)
    return backbone
