"""Fusion layers: 2D positions distinguish tokens, cross-attention ignores padded text, co-attention keeps shapes."""

from __future__ import annotations

import torch

from bcvlm_model.fusion import CoAttentionBlock, CrossAttention, masked_mean, sinusoidal_position_encoding_2d


def test_position_encoding_is_unique_per_cell() -> None:
    encoding = sinusoidal_position_encoding_2d(8, 4, 32, torch.device("cpu"))
    assert encoding.shape == (32, 32)
    assert torch.cdist(encoding, encoding).add(torch.eye(32) * 1e3).min() > 1e-3


def test_cross_attention_ignores_masked_context() -> None:
    torch.manual_seed(0)
    attention = CrossAttention(16, 4).eval()
    queries, context = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    changed = context.clone()
    changed[0, 3:] = torch.randn(3, 16)
    before, after = attention(queries, context, mask), attention(queries, changed, mask)
    assert torch.allclose(before[0], after[0], atol=1e-6)
    assert not torch.allclose(attention(queries, context), attention(queries, changed))


def test_co_attention_updates_both_streams() -> None:
    torch.manual_seed(0)
    block = CoAttentionBlock(16, 4).eval()
    image, text = torch.randn(2, 12, 16), torch.randn(2, 5, 16)
    new_image, new_text = block(image, text, torch.ones(2, 5))
    assert new_image.shape == image.shape and new_text.shape == text.shape
    other_text = torch.randn(2, 5, 16)
    assert not torch.allclose(block(image, other_text, torch.ones(2, 5))[0], new_image)


def test_masked_mean_counts_only_real_tokens() -> None:
    tokens = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(tokens, torch.tensor([[1, 1, 0]])).item() == 2.0
