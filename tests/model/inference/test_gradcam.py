"""Tests of Grad-CAM on a generic nn.Module and of the PNG overlay."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from bcvlm_model.inference.gradcam import GradCAM, save_overlay_png


class _SpotNet(nn.Module):
    """Two-stage conv net whose 'malignancy' logit is the mean of channel 0 of the last stage."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.last_stage = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.bias.zero_()
            self.stem.weight[:, 0, 1, 1] = 1.0
            self.last_stage.weight.zero_()
            self.last_stage.bias.zero_()
            self.last_stage.weight[0, 0] = 1.0
            self.last_stage.weight[1, 1] = -1.0
        for parameter in self.parameters():
            parameter.requires_grad_(False)  # frozen encoder: Grad-CAM must still work

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.last_stage(torch.relu(self.stem(image)))
        return features.mean(dim=(2, 3))


def test_cam_peaks_where_the_evidence_is_and_samples_stay_independent() -> None:
    model = _SpotNet().eval()
    images = torch.zeros(2, 1, 16, 8)
    images[0, 0, 2:4, 1:3] = 1.0
    images[1, 0, 12:15, 5:7] = 1.0
    cam = GradCAM(model, model.last_stage)
    logits, cams = cam(lambda: model(images), task_index=0)
    assert cams.shape == (2, 16, 8)
    torch.testing.assert_close(logits, model(images))
    for index in range(2):
        hot = images[index, 0] > 0
        assert cams[index][hot].min() == 1.0
        assert cams[index][~hot].max() == 0.0
    _, single = cam(lambda: model(images[1:]), task_index=0)
    torch.testing.assert_close(single[0], cams[1])
    assert not model.last_stage._forward_hooks  # hook removed


def test_overlay_png_is_image_sized_and_coloured_where_hot(tmp_path) -> None:
    image = np.full((32, 16), 0.5, dtype=np.float32)
    cam = np.zeros((4, 2), dtype=np.float32)
    cam[0, 0] = 1.0
    path = save_overlay_png(tmp_path / "heat.png", image, cam)
    pixels = np.asarray(Image.open(io.BytesIO(path.read_bytes())))
    assert pixels.shape == (32, 16, 3)
    cold = pixels[-1, -1].astype(int)
    assert cold[0] == cold[1] == cold[2]  # untouched grey
    hot = pixels[0, 0].astype(int)
    assert hot.max() - hot.min() > 40  # colour-mapped


class _NoGradStageNet(_SpotNet):
    """Like _SpotNet but its frozen stages run under no_grad, as ImageBackbone runs frozen stages."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.last_stage(torch.relu(self.stem(image)))
        return features.mean(dim=(2, 3)) * 2.0


def test_cam_works_when_the_target_stage_runs_under_no_grad() -> None:
    model = _NoGradStageNet().eval()
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, 1:3, 1:3] = 1.0
    _, cams = GradCAM(model, model.last_stage)(lambda: model(images), task_index=0)
    assert cams[0][images[0, 0] > 0].min() == 1.0
