"""Fusion layers: visual-token projection with 2D sinusoidal positions and bidirectional image<->text co-attention (SDPA)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_position_encoding_2d(
    height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Fixed 2D sine-cosine position encoding [height*width, dim]: half the channels encode rows, half columns."""
    if dim % 4:
        raise ValueError(f"2D position encoding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    frequencies = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * frequencies[None]
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * frequencies[None]
    row_enc = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    col_enc = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([row_enc, col_enc], dim=2).reshape(height * width, dim).to(dtype)


class VisualTokenProjector(nn.Module):
    """Feature map [B,C,h,w] -> tokens [B,h*w,dim]: 1x1 conv projection, LayerNorm, plus 2D position encoding."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.proj(feature_map.contiguous())
        batch, dim, height, width = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        return tokens + sinusoidal_position_encoding_2d(height, width, dim, x.device, tokens.dtype)


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a context via F.scaled_dot_product_attention (fused kernels)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`context_mask` [B, Tk] (1/True = attend) hides padded context tokens."""
        q, k, v = self._split(self.query(queries)), self._split(self.key(context)), self._split(self.value(context))
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        batch, _, length, _ = attended.shape
        return self.out(attended.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class CoAttentionBlock(nn.Module):
    """Bidirectional co-attention (pre-norm, residual, no in-place ops): image tokens read the text and text tokens
    read the image (both from the block's inputs), then a feed-forward layer on each stream."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.image_norm = nn.LayerNorm(dim)
        self.text_norm = nn.LayerNorm(dim)
        self.image_from_text = CrossAttention(dim, heads, dropout)
        self.text_from_image = CrossAttention(dim, heads, dropout)
        self.image_ff_norm = nn.LayerNorm(dim)
        self.text_ff_norm = nn.LayerNorm(dim)
        self.image_ff = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.text_ff = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image_in, text_in = self.image_norm(image_tokens), self.text_norm(text_tokens)
        image_tokens = image_tokens + self.drop(self.image_from_text(image_in, text_in, text_mask))
        text_tokens = text_tokens + self.drop(self.text_from_image(text_in, image_in))
        image_tokens = image_tokens + self.drop(self.image_ff(self.image_ff_norm(image_tokens)))
        text_tokens = text_tokens + self.drop(self.text_ff(self.text_ff_norm(text_tokens)))
        return image_tokens, text_tokens


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the token axis of [B,T,D], counting only tokens where mask [B,T] is nonzero."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
