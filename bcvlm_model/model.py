"""BreastVLM: hierarchical co-attention between mammogram stage tokens and report tokens, and its baselines."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from bcvlm_model import TASKS
from bcvlm_model.encoders.image_backbone import ImageBackbone, build_image_backbone
from bcvlm_model.encoders.text_encoder import load_text_encoder
from bcvlm_model.fusion import CoAttentionBlock, VisualTokenProjector, masked_mean
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.parameters import federated_parameter_names, get_trainable_state, set_trainable_state

__all__ = ["BreastVLM", "build_model", "federated_parameter_names", "get_trainable_state", "set_trainable_state"]


class BreastVLM(nn.Module):
    """One forward signature for the VLM and every baseline (`cfg.kind`); returns logits [B, 2] (TASKS order).

    vlm: at each tapped image stage, projected visual tokens and the running text tokens pass bidirectional
    co-attention blocks; the pooled tokens of every stage and the pooled text feed the head.
    image_only / text_only: the same projections and pooling for one modality. late_concat: both pooled
    vectors concatenated, no co-attention.
    """

    def __init__(self, cfg: ModelConfig, image_backbone: ImageBackbone | None, text_encoder: nn.Module | None) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.kind
        dim = cfg.fusion.dim
        self.uses_image = cfg.kind != "text_only"
        self.uses_text = cfg.kind != "image_only"
        if self.uses_image and image_backbone is None:
            raise ValueError(f"kind={cfg.kind!r} needs an image backbone")
        if self.uses_text and text_encoder is None:
            raise ValueError(f"kind={cfg.kind!r} needs a text encoder")
        self.image_backbone = image_backbone if self.uses_image else None
        self.text_encoder = text_encoder if self.uses_text else None
        pooled_parts = 0
        if self.uses_image:
            self.visual_projectors = nn.ModuleList(
                VisualTokenProjector(channels, dim) for channels in image_backbone.tap_channels
            )
            pooled_parts += len(image_backbone.tap_channels)
        if self.uses_text:
            hidden = int(text_encoder.config.hidden_size)
            self.text_projector = nn.Sequential(nn.Linear(hidden, dim), nn.LayerNorm(dim))
            pooled_parts += 1
        if cfg.kind == "vlm":
            self.co_attention = nn.ModuleList(
                nn.ModuleList(
                    CoAttentionBlock(dim, cfg.fusion.heads, cfg.fusion.mlp_ratio, cfg.dropout)
                    for _ in range(cfg.fusion.blocks_per_stage)
                )
                for _ in image_backbone.tap_channels
            )
        self.head = nn.Sequential(
            nn.LayerNorm(dim * pooled_parts), nn.Dropout(cfg.dropout), nn.Linear(dim * pooled_parts, len(TASKS))
        )
        self.set_gradient_checkpointing(cfg.gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute trainable backbone stages and co-attention blocks during backward."""
        self.gradient_checkpointing = enabled
        if self.image_backbone is not None:
            self.image_backbone.gradient_checkpointing = enabled

    def text_encoder_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        """The text encoder's last hidden state [B, T, hidden] (under no_grad when the encoder is frozen)."""
        frozen = not any(parameter.requires_grad for parameter in self.text_encoder.parameters())
        with torch.no_grad() if frozen else contextlib.nullcontext():
            return self.text_encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
            ).last_hidden_state

    def _co_attend(
        self, block: CoAttentionBlock, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, image_tokens, text_tokens, text_mask, use_reentrant=False)
        return block(image_tokens, text_tokens, text_mask)

    def forward(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        # Precision is the caller's: the training loops and the predictor wrap this in bf16 autocast when asked.
        text_hidden = (
            self.text_encoder_hidden(input_ids, attention_mask, token_type_ids, position_ids)
            if self.uses_text
            else None
        )
        feature_maps = self.image_backbone(image) if self.uses_image else None
        return self.fuse(feature_maps, text_hidden, attention_mask if self.uses_text else None)

    def fuse(
        self, feature_maps: list[torch.Tensor] | None, text_hidden: torch.Tensor | None, text_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits [B, 2] from the image backbone's tapped maps and the text encoder's hidden state: projections,
        co-attention, pooling and head (everything after the encoders; `forward` and cached-feature training share it)."""
        pooled: list[torch.Tensor] = []
        text_tokens = None
        if self.uses_text:
            text_tokens = self.text_projector(text_hidden)
        if self.uses_image:
            for stage, (projector, feature_map) in enumerate(zip(self.visual_projectors, feature_maps)):
                image_tokens = projector(feature_map)
                if self.kind == "vlm":
                    for block in self.co_attention[stage]:
                        image_tokens, text_tokens = self._co_attend(block, image_tokens, text_tokens, text_mask)
                pooled.append(image_tokens.mean(dim=1))
        if self.uses_text:
            pooled.append(masked_mean(text_tokens, text_mask))
        logits = self.head(torch.cat(pooled, dim=-1))
        return logits.float()  # float32 logits under a caller's bf16 autocast too


def build_model(cfg: ModelConfig, pretrained: bool = True) -> BreastVLM:
    """Build the configured model offline; `pretrained=False` skips weight files (checkpoint loading fills them)."""
    image = build_image_backbone(cfg.image_encoder, pretrained=pretrained) if cfg.kind != "text_only" else None
    text = (
        load_text_encoder(cfg.text_encoder, dropout=cfg.dropout, pretrained=pretrained)
        if cfg.kind != "image_only"
        else None
    )
    return BreastVLM(cfg, image, text)
