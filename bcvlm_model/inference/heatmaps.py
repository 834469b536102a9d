"""Grad-CAM heatmaps of a BreastVLM's image encoder (its last stage), written as PNG overlays per image."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from bcvlm_model.data.cache import safe_file_stem


def image_encoder_last_stage(model: nn.Module) -> nn.Module:
    """The last stage of the model's ConvNet image encoder (`model.image_backbone.stages[-1]`).

    Raises ValueError for models without an image encoder (text_only) or with a ViT encoder (token outputs).
    """
    backbone = getattr(model, "image_backbone", None)
    if backbone is None or not hasattr(backbone, "stages"):
        kind = getattr(model, "kind", type(model).__name__)
        raise ValueError(f"heatmaps need a model with an image encoder; this checkpoint's model is '{kind}'")
    if getattr(backbone, "patch_size", 0):
        raise ValueError("heatmaps need a ConvNet image encoder; this checkpoint uses a ViT (token outputs)")
    return backbone.stages[-1]


def heatmap_path(heatmap_dir: str | os.PathLike[str], image_id: str, task: str) -> Path:
    """`<dir>/<safe image id>_<task>.png`."""
    return Path(heatmap_dir) / f"{safe_file_stem(image_id)}_{task}.png"
