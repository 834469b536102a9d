"""Image backbone: single-channel adaptation keeps the pretrained features, norms are Opacus-safe, stages freeze."""

from __future__ import annotations

import torch
from torch import nn

from bcvlm_model.encoders.image_backbone import build_image_backbone, create_timm_image_model
from bcvlm_model.encoders.norms import FrozenBatchNormAct2d, GroupNormAct2d
from bcvlm_model.model_config import ImageEncoderConfig


def test_single_channel_backbone_matches_pretrained_rgb_model_on_gray_input() -> None:
    cfg = ImageEncoderConfig()
    backbone = build_image_backbone(cfg).eval()
    rgb = create_timm_image_model(cfg).eval()
    gray = torch.randn(2, 1, 128, 64)
    with torch.no_grad():
        ours = backbone(gray)
        reference = rgb.forward_intermediates(gray.expand(-1, 3, -1, -1), indices=[3, 4], intermediates_only=True)
    assert backbone.tap_strides == [16, 32] and backbone.tap_channels == [112, 320]
    assert [tuple(f.shape) for f in ours] == [(2, 112, 8, 4), (2, 320, 4, 2)]
    for mine, theirs in zip(ours, reference):
        assert torch.allclose(mine, theirs, atol=1e-3, rtol=1e-3), (mine - theirs).abs().max()


def test_norm_modes_leave_no_batchnorm_and_no_inplace_ops() -> None:
    for mode, kind in (("batch_frozen", FrozenBatchNormAct2d), ("group", GroupNormAct2d)):
        backbone = build_image_backbone(ImageEncoderConfig(norm=mode, weights="none"), pretrained=False)
        modules = list(backbone.modules())
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
        assert any(isinstance(m, kind) for m in modules)
        assert not any(getattr(m, "inplace", False) for m in modules)


def test_trainable_stages_freeze_the_rest() -> None:
    backbone = build_image_backbone(ImageEncoderConfig(trainable_stages=2, weights="none"), pretrained=False)
    flags = [any(p.requires_grad for p in stage.parameters()) for stage in backbone.stages]
    assert flags == [False] * (len(flags) - 2) + [True, True]
    backbone.set_trainable_stages(0)
    assert backbone.first_trainable_stage() == len(backbone.stages)
    backbone.set_trainable_stages(-1)
    assert all(p.requires_grad for p in backbone.parameters())


def test_vit_backbone_runs_at_a_non_square_resolution() -> None:
    cfg = ImageEncoderConfig(
        name="vit_small_patch16_224",
        weights="none",
        trainable_stages=-1,
        feature_stages=[5, 11],
    )
    backbone = build_image_backbone(cfg)
    features = backbone(torch.randn(1, 1, 128, 64))
    assert [tuple(f.shape) for f in features] == [(1, 384, 8, 4), (1, 384, 8, 4)]
    assert not torch.allclose(features[0], features[1])
