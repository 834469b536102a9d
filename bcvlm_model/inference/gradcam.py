"""Grad-CAM on any layer of an nn.Module (forward hook) and PNG overlays of the heatmap on the preprocessed image."""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bcvlm_model.atomic_io import atomic_write_bytes


class GradCAM:
    """Grad-CAM of `target_layer`: ReLU(sum_c mean_hw(d score / d A_c) * A_c), per sample, scaled to [0, 1].

    The hook re-roots the layer's output as a leaf that requires grad, so it works on frozen encoders too, and
    samples in a batch stay independent as long as the model has no cross-sample layer in eval mode.
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module) -> None:
        self.model = model
        self.target_layer = target_layer
        self._activation: torch.Tensor | None = None

    def _hook(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise TypeError(f"Grad-CAM target layer must output a [B, C, H, W] tensor, got {type(output).__name__}")
        leaf = output.detach().requires_grad_(True)
        self._activation = leaf
        with torch.enable_grad():  # frozen stages may run under no_grad: the path onward must still be tracked
            return leaf.clone()

    @contextmanager
    def _hooked(self) -> Iterator[None]:
        handle = self.target_layer.register_forward_hook(self._hook)
        try:
            yield
        finally:
            handle.remove()
            self._activation = None

    def __call__(self, forward: Callable[[], torch.Tensor], task_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run `forward()` (returns logits [B, T]) with the hook on; return (logits detached, cams [B, h, w] in [0, 1])."""
        with self._hooked(), torch.enable_grad():
            logits = forward()
            if self._activation is None:
                raise RuntimeError("Grad-CAM target layer was not called during the forward pass")
            activation = self._activation
            (grads,) = torch.autograd.grad(logits[:, task_index].float().sum(), activation)
        weights = grads.float().mean(dim=(2, 3), keepdim=True)
        cams = F.relu((weights * activation.detach().float()).sum(dim=1))
        peak = cams.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
        return logits.detach(), cams / peak


def upsample_cam(cam: torch.Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one [h, w] heatmap to [height, width], values kept in [0, 1]."""
    tensor = torch.as_tensor(cam, dtype=torch.float32)[None, None]
    resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return resized.clamp(0.0, 1.0).cpu().numpy()


def overlay_png_bytes(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> bytes:
    """PNG bytes: the grey image [H, W] in [0, 1] blended with the colour-mapped heatmap (resized to the image)."""
    from matplotlib import colormaps
    from PIL import Image

    if image.ndim != 2:
        raise ValueError(f"overlay needs a 2-D grey image, got shape {image.shape}")
    grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    heat = upsample_cam(cam, *grey.shape) if cam.shape != grey.shape else np.clip(cam, 0.0, 1.0)
    colour = colormaps[colormap](heat)[..., :3].astype(np.float32)
    weight = alpha * heat[..., None]
    blended = (1.0 - weight) * grey[..., None] + weight * colour
    buffer = io.BytesIO()
    Image.fromarray((blended * 255.0 + 0.5).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_overlay_png(path: str | os.PathLike[str], image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> Path:
    """Write the heatmap overlay as a PNG, atomically."""
    return atomic_write_bytes(path, overlay_png_bytes(image, cam, alpha))
